"""chaos.watch_check: each failure it exists for (gap, duplicate, reorder, ...) fails it."""

from __future__ import annotations

import attrs
import pytest

from chaos.history import Op
from chaos.watch_check import WatchLog, check_feed, check_watch, check_watcher
from client.feed import Change, ChangeId


def ch(cid: str, key: str, value: str | None = "v", op: str = "set") -> Change:
    return Change(ChangeId.parse(cid), op, key.encode(),
                  None if value is None else value.encode())


FEED = [ch("3-0", "k1", "1"), ch("4-0", "k2", "2"), ch("4-1", "k1", "3"),
        ch("6-0", "kctr", "1", "incrby"), ch("7-0", "k1", None, "del"), ch("9-0", "k2", "4")]


def log(events: list[Change], pattern: str = "*", start: str = "0-0", reached: str = "9-0",
        **kw: object) -> WatchLog:
    return WatchLog("w0@n1", pattern, ChangeId.parse(start), tuple(events),
                    ChangeId.parse(reached), **kw)  # type: ignore[arg-type]


def test_the_exact_feed_passes_whole_or_filtered_or_partial() -> None:
    assert check_watcher(log(FEED), FEED).ok
    assert check_watcher(log([FEED[0], FEED[2], FEED[4]], "k1"), FEED).ok
    assert check_watcher(log([FEED[1], FEED[2]], "k[12]", start="3-0", reached="4-1"),
                         FEED).ok
    assert check_watcher(log([], "k?", start="9-0", reached="9-0"), FEED).ok


@pytest.mark.parametrize(("events", "pattern", "expect"), [
    ([FEED[0], FEED[1], FEED[3], FEED[4], FEED[5]], "*", "gap, 1 changes"),
    ([FEED[0], FEED[2], FEED[4]], "k?", "gap, 2 changes"),  # k2's changes skipped
    ([*FEED[:3], FEED[2], *FEED[3:]], "*", "duplicates, first 4-1"),
    ([FEED[0], FEED[2], FEED[1], *FEED[3:]], "*", "out of order, first 4-0 after 4-1"),
    ([*FEED, ch("8-0", "k1", "99")], "*", "not in the feed"),  # invented
    ([FEED[0], FEED[2], FEED[3], FEED[4]], "k1", "not in the feed"),  # filter ignored
    ([ch("3-0", "k1", "other"), *FEED[1:]], "*", "differ from the feed, first 3-0"),
])
def test_each_kind_of_wrong_sequence_fails(events: list[Change], pattern: str,
                                          expect: str) -> None:
    verdict = check_watcher(log(events, pattern), FEED)
    assert not verdict.ok and expect in verdict.summary


def test_a_change_past_the_reference_feeds_end_is_not_judged() -> None:
    """The feed is read before the watchers finish: one may get a later change (an
    EXPIRED entry of the active expiry), which the reference cannot hold."""
    later = ch("10-0", "k1", None, "expired")
    assert check_watcher(log([*FEED, later], reached="10-0"), FEED).ok
    verdict = check_watcher(log([*FEED[:-1], later], reached="10-0"), FEED)
    assert not verdict.ok and "gap" in verdict.summary  # what the feed holds still counts


def test_a_flushall_belongs_to_every_filter() -> None:
    feed = [*FEED, ch("10-0", "", None, "flushall"), ch("11-0", "k1", "5")]
    assert check_watcher(log([FEED[0], FEED[2], FEED[4], feed[-2], feed[-1]], "k1",
                             reached="11-0"), feed).ok
    v = check_watcher(log([FEED[0], FEED[2], FEED[4], feed[-1]], "k1", reached="11-0"), feed)
    assert not v.ok and "gap" in v.summary


def test_changes_before_the_start_count_as_out_of_order() -> None:
    verdict = check_watcher(log(FEED[2:], start="4-1"), FEED)
    assert not verdict.ok and "out of order, first 4-1 after 4-1" in verdict.summary


def test_a_stall_an_error_or_refused_replies_fail() -> None:
    assert "stalled" in check_watcher(log(FEED, caught_up=False), FEED).summary
    assert "ended with" in check_watcher(log(FEED, error="FeedCompacted"), FEED).summary
    assert "refused 2" in check_watcher(log(FEED, rejected=2), FEED).summary


def op(f: str, key: str, value: object, outcome: str = "ok", result: bool | None = None) -> Op:
    return Op(0, key, f, value, 0.0, 1.0 if outcome != "info" else None, outcome,  # type: ignore[arg-type]
              result=result)


HISTORY = [op("write", "k1", 1), op("write", "k2", 2), op("cas", "k1", (1, 3), result=True),
           op("write", "k2", 4, "info"), op("cas", "k2", (2, 5), result=False),
           op("read", "k1", 3)]


def test_the_feed_holds_every_acknowledged_write() -> None:
    keys = ["k1", "k2"]
    assert check_feed(FEED, HISTORY, keys, complete=True).ok
    lost = [c for c in FEED if c.id != ChangeId(4, 1)]  # the swapped CAS's 3
    v = check_feed(lost, HISTORY, keys, complete=True)
    assert not v.ok and "1 acknowledged writes missing from the feed, first k1=3" in v.summary
    v = check_feed([*FEED, ch("10-0", "k2", "77")], HISTORY, keys, complete=True)
    assert not v.ok and "never written, first k2=77" in v.summary
    v = check_feed([FEED[1], FEED[0]], [], keys, complete=True)
    assert not v.ok and "the feed: 1 out of order" in v.summary
    v = check_feed(FEED, HISTORY, keys, complete=False)
    assert not v.ok and "compacted" in v.summary


def test_check_watch_combines_and_names_the_failing_watcher() -> None:
    good = log(FEED)
    bad = attrs.evolve(log(FEED[1:]), name="w1@n2")
    assert check_watch([good], FEED, HISTORY, ["k1", "k2"], True).ok
    v = check_watch([good, bad], FEED, HISTORY, ["k1", "k2"], True)
    assert not v.ok and "w1@n2: gap" in v.summary
