"""The change-feed check of ``raftkv-chaos run --watchers N`` (issue 18): pure functions.

Material: each watcher's sequence of changes (client.watch, moving between nodes as the
nemesis kills and cuts them), the id it started after and the id it had reached at the
end; the full feed read afterwards from a live node (``XRANGE __raftkv:changes - +``); the
workload's history. Verdicts:

- every watcher's sequence is exactly the full feed restricted to its glob over the range
  it covered, ``(start, reached]``: no id twice (duplicate), no id below one already seen
  (reorder), no feed entry of that range missing (gap), nothing the feed does not hold
  there (invented, or outside the filter), and each change's fields equal the feed's;
- the reference feed itself is in strictly increasing id order;
- every acknowledged write of the workload (``SET k v``, a ``CAS`` that swapped) is in the
  feed as a change of ``k`` to ``v``, and the feed gives no workload key a value that no
  client ever sent.

The check can only be complete if the feed still holds everything since the run started
(``complete``: the harness asks a node to read from the run's first id, which answers
"compacted" otherwise); if not, the verdict says so and fails rather than pass unchecked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from chaos.counters import Verdict
from chaos.history import Op
from client.feed import Change, ChangeId
from raftkv.kv import stringmatch


@attrs.frozen
class WatchLog:
    """What one watcher received and how far it got."""

    name: str  # e.g. "w1@n2": the watcher and the node it started on
    pattern: str
    start: ChangeId  # it asked for the changes after this id
    events: tuple[Change, ...]
    reached: ChangeId  # its resume point at the end (the last change it received)
    resumes: int = 0  # moves to another node
    rejected: int = 0  # replies it refused as malformed or out of order
    error: str | None = None  # the watch ended with this error
    caught_up: bool = True  # it reached the feed's end for its filter before the deadline


def matches(pattern: str, change: Change) -> bool:
    """Whether a filtered feed holds ``change``: the server's glob (Redis's stringmatchlen)
    on its key; a FLUSHALL/FLUSHDB (key ``b""``) concerns every key, so every filter."""
    if change.key == b"" and change.op in ("flushall", "flushdb"):
        return True
    return stringmatch(pattern.encode(), change.key)


def _fields(c: Change) -> tuple[object, ...]:
    return (c.op, c.key, c.value, c.deadline)


def order_problems(changes: Sequence[Change], after: ChangeId, what: str) -> list[str]:
    """Duplicates and reorders in a sequence that must strictly increase after ``after``."""
    seen: set[ChangeId] = set()
    top = after
    dups, reorders = [], []
    for c in changes:
        if c.id in seen:
            dups.append(c.id)
        elif c.id <= top:
            reorders.append((c.id, top))
        seen.add(c.id)
        top = max(top, c.id)
    out = []
    if dups:
        out.append(f"{what}: {len(dups)} duplicates, first {dups[0]}")
    if reorders:
        got, prev = reorders[0]
        out.append(f"{what}: {len(reorders)} out of order, first {got} after {prev}")
    return out


def check_watcher(log: WatchLog, feed: Sequence[Change]) -> Verdict:
    """One watcher against the reference feed (see the module docstring)."""
    problems = order_problems(log.events, log.start, log.name)
    # Judged up to the reference feed's end: it is read first, and the watchers then go on
    # until they reach it, so one may also get a change applied after the read (attack10:
    # with --expiring, an EXPIRED entry of the leader's active expiry; both watchers of a
    # run got it, and it failed as "not in the feed").
    end = feed[-1].id if feed else log.start
    lo, hi = log.start, min(log.reached, max(end, log.start))
    expected = {f.id: f for f in feed if lo < f.id <= hi and matches(log.pattern, f)}
    got = {c.id: c for c in log.events if c.id <= hi}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(i for i in set(got) & set(expected)
                    if _fields(got[i]) != _fields(expected[i]))
    if missing:
        problems.append(f"{log.name}: gap, {len(missing)} changes of the feed never "
                        f"received, first {missing[0]}")
    if extra:
        problems.append(f"{log.name}: {len(extra)} changes not in the feed for "
                        f"{log.pattern!r} over ({lo}, {hi}], first {extra[0]}")
    if differ:
        i = differ[0]
        problems.append(f"{log.name}: {len(differ)} changes differ from the feed, first {i}: "
                        f"{_fields(got[i])} != {_fields(expected[i])}")
    if log.rejected:
        problems.append(f"{log.name}: refused {log.rejected} bad replies from nodes")
    if log.error:
        problems.append(f"{log.name}: ended with {log.error}")
    if not log.caught_up:
        problems.append(f"{log.name}: stalled at {hi}, behind the feed's end")
    summary = (f"{log.name} {log.pattern!r}: {len(log.events)} changes = the feed over "
               f"({lo}, {hi}], {log.resumes} moves")
    return Verdict(not problems, "; ".join(problems) or summary)


def acknowledged_writes(history: Iterable[Op]) -> tuple[set[tuple[str, str]],
                                                        set[tuple[str, str]]]:
    """(acknowledged, sent) ``(key, value)`` pairs of the workload's writes."""
    acked: set[tuple[str, str]] = set()
    sent: set[tuple[str, str]] = set()
    for op in history:
        if op.f == "write":
            pair = (op.key, str(op.value))
            ok = op.outcome == "ok"
        elif op.f == "cas":
            pair = (op.key, str(op.value[1]))
            ok = op.outcome == "ok" and op.result is True
        else:
            continue
        sent.add(pair)
        if ok:
            acked.add(pair)
    return acked, sent


def check_feed(feed: Sequence[Change], history: Iterable[Op], keys: Iterable[str],
               complete: bool) -> Verdict:
    """The reference feed: ordered, holding every acknowledged write, inventing none."""
    if not complete:
        return Verdict(False, "the feed no longer holds the run's beginning (compacted): "
                              "nothing could be checked; raise the nodes' watch retention")
    problems = order_problems(feed, ChangeId(0, 0), "the feed")
    acked, sent = acknowledged_writes(history)
    names = set(keys)
    in_feed = {(c.key.decode("utf-8", "replace"), c.value.decode("utf-8", "replace"))
               for c in feed if c.value is not None}
    lost = sorted(acked - in_feed)
    if lost:
        problems.append(f"{len(lost)} acknowledged writes missing from the feed, first "
                        f"{lost[0][0]}={lost[0][1]}")
    invented = sorted(p for p in in_feed if p[0] in names and p not in sent)
    if invented:
        problems.append(f"{len(invented)} values in the feed never written, first "
                        f"{invented[0][0]}={invented[0][1]}")
    summary = (f"{len(feed)} changes in the feed, every one of {len(acked)} acknowledged "
               "writes among them")
    return Verdict(not problems, "; ".join(problems) or summary)


def check_watch(logs: Sequence[WatchLog], feed: Sequence[Change], history: Iterable[Op],
                keys: Iterable[str], complete: bool) -> Verdict:
    """Every watcher and the feed; one verdict for the report."""
    verdicts = [check_feed(feed, history, keys, complete)]
    if complete:
        verdicts += [check_watcher(log, feed) for log in logs]
    bad = [v.summary for v in verdicts if not v.ok]
    if bad:
        return Verdict(False, "; ".join(bad))
    events = sum(len(log.events) for log in logs)
    moves = sum(log.resumes for log in logs)
    return Verdict(True, f"{len(logs)} watchers received {events} changes, each sequence "
                         f"equal to the feed under its filter ({moves} moves between "
                         f"nodes); {verdicts[0].summary}")
