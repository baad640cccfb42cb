"""The change feed's tail (raftkv.kv.feed): retention by entries and bytes, the floor that
tells a reader it missed something, filters, and the tail carried in the snapshot."""

from __future__ import annotations

import gc
import random

import msgpack
import pytest

from raftkv.kv import KVDecodeError, KVStateMachine, decode_snapshot, encode_entry
from raftkv.kv.changes import Bulk, Change, expand
from raftkv.kv.feed import (
    CHANGE_OVERHEAD,
    MAX_POSITION,
    ChangeFeed,
    Compacted,
    FeedState,
    key_filter,
)
from raftkv.kv.state import KVState, encode_snapshot

T0 = 1_700_000_000_000
TOP = (2**64, 0)


def change(index: int, position: int = 0, key: bytes = b"k", op: str = "set",
           value: bytes | None = b"v") -> Change:
    return Change(index, position, op, key, value, None)


def ids(changes: list[Change]) -> list[tuple[int, int]]:
    return [c.id for c in changes]


def test_retention_keeps_the_last_n_log_entries_and_moves_the_floor() -> None:
    feed = ChangeFeed(retention_entries=3)
    feed.append(1, [change(1, 0), change(1, 1)])
    feed.append(2, [])  # an entry that changed nothing still counts
    feed.append(3, [change(3)])
    assert ids(feed.after((0, 0), 10)) == [(1, 0), (1, 1), (3, 0)]
    feed.append(4, [change(4)])  # entry 1 leaves the window: both its changes go
    assert ids(feed.after((1, 1), 10)) == [(3, 0), (4, 0)]
    assert feed.floor == (1, 1)
    with pytest.raises(Compacted) as caught:
        feed.after((1, 0), 10)  # (1, 1) was dropped before this reader saw it
    assert caught.value.oldest == (3, 0) and caught.value.floor == (1, 1)
    feed.append(6, [])
    feed.append(7, [])  # entries 3 and 4 leave the window (5, 6, 7): the tail is empty
    assert len(feed) == 0 and feed.floor == (4, 0)
    assert feed.after((4, 0), 10) == []
    with pytest.raises(Compacted) as caught:
        feed.after((3, 0), 10)
    assert caught.value.oldest is None


def test_a_full_feed_keeps_exactly_its_window_whatever_the_records_and_bounds() -> None:
    """Against a model (every change ever appended, filtered by the bounds: the last N
    entries, at most N changes, at most B bytes): single
    changes dropped one an entry (``append``'s own path), next to MSET Bulks, changeless
    entries, several changes an entry, the bytes bound cutting into a Bulk, and the
    compaction of the dropped head (thousands of appends)."""
    def weigh(c: Change) -> int:
        return CHANGE_OVERHEAD + len(c.key) + len(c.value or b"")

    rng = random.Random(7)
    for entries_bound, bytes_bound in ((1, 10**9), (3, 10**9), (50, 10**9), (5, 2000),
                                       (40, 12_000), (200, 10**9)):
        feed = ChangeFeed(retention_entries=entries_bound, retention_bytes=bytes_bound)
        every: list[Change] = []
        first = index = 0  # every[first:] is the window
        for _ in range(3000):
            index += rng.choice((1, 1, 1, 2))
            records: list[Change | Bulk] = []
            position = 0
            for _ in range(rng.choice((0, 1, 1, 1, 1, 1, 2))):
                if rng.random() < 0.05:
                    n = rng.randint(1, 40)
                    bulk = Bulk(index, position, "mset", [b"m%d" % i for i in range(n)],
                                [b"v" * rng.randint(0, 9)] * n)
                    records.append(bulk)
                    every += bulk.changes(0, n)
                    position += n
                else:
                    one = change(index, position, key=b"k" * rng.randint(1, 9),
                                 value=rng.choice((None, b"x" * rng.randint(0, 30))))
                    records.append(one)
                    every.append(one)
                    position += 1
            feed.append(index, records)
            weight = sum(map(weigh, every[first:]))  # the model: drop the oldest while
            while first < len(every) and (every[first].index <= index - entries_bound
                                          or len(every) - first > entries_bound
                                          or weight > bytes_bound):  # a bound wants it
                weight -= weigh(every[first])
                first += 1
            kept = every[first:]
            assert feed.after(feed.known_floor, len(kept) + 1) == kept
            assert len(feed) == len(kept) and feed.bytes == weight
            if first:
                assert feed.floor == every[first - 1].id


def test_retention_by_bytes_drops_single_changes_oldest_first() -> None:
    size = CHANGE_OVERHEAD + 1 + 10
    feed = ChangeFeed(retention_entries=1000, retention_bytes=2 * size)
    feed.append(1, [change(1, 0, value=b"x" * 10), change(1, 1, value=b"y" * 10)])
    assert feed.bytes == 2 * size and len(feed) == 2
    feed.append(2, [change(2, 0, value=b"z" * 10)])
    assert ids(feed.after((1, 0), 10)) == [(1, 1), (2, 0)] and feed.floor == (1, 0)
    feed.append(3, [change(3, 0, value=b"w" * 1000)])  # alone larger than the bound
    assert len(feed) == 0 and feed.floor == (3, 0) and feed.bytes == 0


def test_ids_compare_index_then_position_and_reads_are_bounded() -> None:
    feed = ChangeFeed()
    feed.append(9, [change(9, p) for p in range(12)])
    feed.append(10, [change(10)])
    assert ids(feed.after((9, 3), 2)) == [(9, 4), (9, 5)]
    assert ids(feed.after((9, 11), 5)) == [(10, 0)]
    assert feed.after((10, 0), 5) == []
    assert feed.last_id == (10, 0) and feed.first.id == (9, 0)
    assert ids(feed.between((9, 10), TOP, 10)) == [(9, 10), (9, 11), (10, 0)]
    assert ids(feed.between((0, 0), (9, 1), 10, reverse=True)) == [(9, 1), (9, 0)]
    assert ids(feed.between((9, 5), (9, 4), 10)) == []


def test_filters_and_flushall_passes_every_filter() -> None:
    feed = ChangeFeed()
    feed.append(1, [change(1, 0, b"user:1"), change(1, 1, b"other")])
    feed.append(2, [change(2, 0, b"", op="flushall", value=None)])
    feed.append(3, [change(3, 0, b"", op="set")])  # a real key named "": not a flush
    users = key_filter(lambda key: key.startswith(b"user:"))
    assert ids(feed.after((0, 0), 10, users)) == [(1, 0), (2, 0)]


def test_the_compacted_error_is_never_given_to_a_reader_at_the_floor() -> None:
    feed = ChangeFeed(retention_entries=1)
    for i in range(1, 50):
        feed.append(i, [change(i)])
        feed.check(feed.floor)  # a reader that saw the last dropped change misses nothing


def test_a_snapshot_carries_the_tail_and_floor_exactly() -> None:
    kv = KVStateMachine(feed=ChangeFeed(retention_entries=25))  # indexes after last - 25
    for i in range(1, 7):
        kv.apply(encode_entry([b"SET", b"k%d" % i, b"v"], T0), index=10 * i)
    copy = KVStateMachine(feed=ChangeFeed(retention_entries=25))
    copy.restore(kv.snapshot())
    copy.feed.restored_at(60)
    assert copy.feed.state() == kv.feed.state()
    assert ids(copy.feed.after(copy.feed.floor, 10)) == [(40, 0), (50, 0), (60, 0)]
    assert copy.snapshot() == kv.snapshot()
    # The next entry is trimmed the same way on both.
    for machine in (kv, copy):
        machine.apply(encode_entry([b"DEL", b"k6"], T0), index=70)
    assert copy.feed.state() == kv.feed.state() and copy.feed.floor == (40, 0)
    assert ids(copy.feed.after((40, 0), 10)) == [(50, 0), (60, 0), (70, 0)]


def test_a_snapshot_without_a_feed_starts_the_feed_at_its_index() -> None:
    old = encode_snapshot(KVState(data={b"a": b"1"}, seq=7))  # version 2, as before
    assert msgpack.unpackb(old)[0] == 2 and decode_snapshot(old).feed is None
    kv = KVStateMachine()
    kv.restore(old)
    kv.feed.restored_at(41)
    assert kv.feed.floor == (41, MAX_POSITION)
    with pytest.raises(Compacted):
        kv.feed.after((41, 0), 10)  # entry 41 may have had changes this node never saw
    assert kv.feed.after(kv.feed.floor, 10) == []
    kv.apply(encode_entry([b"SET", b"b", b"2"], T0), index=42)
    assert ids(kv.feed.after(kv.feed.floor, 10)) == [(42, 0)]


def test_a_feed_state_survives_restored_at_unchanged() -> None:
    feed = ChangeFeed()
    feed.replace(FeedState((5, 2), (change(6),)))
    feed.restored_at(9)
    assert feed.floor == (5, 2) and feed.last_id == (6, 0) and feed.last_index == 9


@pytest.mark.parametrize(("bad", "message"), [
    ("not a list", "not \\[floor"),
    ([1, 2], "not \\[floor"),
    ([None, None, [[1, 0, "set", b"k", b"v"]]], "6-item"),
    ([None, None, [[1, 0, "set", "k", b"v", None]]], "bad key"),
    ([None, None, [[1, 0, "set", b"k", 5, None]]], "bad key"),
    ([None, None, [[1, 0, 7, b"k", b"v", None]]], "bad op"),
    ([None, None, [[1, 0, "x" * 65, b"k", b"v", None]]], "bad op"),
    ([None, None, [[1, 0, "set", b"k", b"v", -1]]], "deadline"),
    ([None, None, [[2, 0, "set", b"k", b"v", None], [1, 0, "set", b"k", b"v", None]]],
     "strictly increasing"),
    ([None, None, [[1, 0, "set", b"k", b"v", None], [1, 0, "set", b"k", b"v", None]]],
     "strictly increasing"),
    ([5, 0, [[4, 9, "set", b"k", b"v", None]]], "strictly increasing"),
    ([5, None, []], "floor"),
    ([-1, 0, []], "floor"),
])
def test_a_hostile_feed_in_a_snapshot_is_refused(bad: object, message: str) -> None:
    blob = msgpack.packb([4, {}, {}, {}, 0, 0, 0, {}, {}, [], bad], use_bin_type=True)
    with pytest.raises(KVDecodeError, match=message):
        decode_snapshot(blob)


def test_the_feed_is_history_not_state() -> None:
    one, two = KVStateMachine(), KVStateMachine()
    one.apply(encode_entry([b"SET", b"a", b"1"], T0), index=5)
    two.apply(encode_entry([b"SET", b"a", b"1"], T0), index=6)  # another log position
    assert one == two and one.digest() == two.digest()
    assert one.snapshot() != two.snapshot()


def _bulk(index: int, position: int, n: int, tag: int) -> Bulk:
    keys = [b"k%d:%d" % (tag, i) for i in range(n)]
    return Bulk(index, position, "mset", keys, [b"v" * (i % 7) for i in range(n)])


@pytest.mark.parametrize("seed", range(12))
def test_a_bulk_record_reads_and_trims_exactly_as_its_changes_would(seed: int) -> None:
    """An MSET's changes are kept as one Bulk record, made into changes only when read:
    every read, length, first/last id, floor, retention cut (entries and bytes, inside a
    bulk too) and snapshot state equals that of the same changes kept one by one."""
    rng = random.Random(seed)
    entries, limit = rng.choice([(5, 10**9), (1000, 4000), (3, 2500), (1000, 900)])
    bulky, plain = ChangeFeed(entries, limit), ChangeFeed(entries, limit)
    index = 0
    for _ in range(14):
        index += rng.choice([1, 1, 2])
        records: list = []
        position = 0
        for _ in range(rng.choice([1, 1, 2, 3])):
            if rng.random() < 0.5:
                records.append(_bulk(index, position, rng.choice([1, 2, 5, 40]), index))
                position += len(records[-1])
            else:
                records.append(change(index, position, b"c%d" % position, value=b"x" * 9))
                position += 1
        bulky.append(index, records)
        plain.append(index, expand(records))
        assert len(bulky) == len(plain) and bulky.bytes == plain.bytes
        assert bulky.floor == plain.floor and bulky.last_id == plain.last_id
        assert bulky.first == plain.first and bulky.last == plain.last
        assert bulky.state() == plain.state()
        copy = ChangeFeed(entries, limit)  # a snapshot's feed taken as it is (a Tail)
        copy.replace(bulky.state())
        assert copy.state() == plain.state() and copy.bytes == plain.bytes
        assert copy.floor == plain.floor and len(copy) == len(plain)
        every = ids(plain.between((0, 0), TOP, 10**6))
        points = [(0, 0), plain.known_floor, *rng.sample(every, min(5, len(every))),
                  (index, 2), (index + 1, 0)]
        for after in points:
            for until in [*points, TOP]:
                for size in (1, 3, 1000):
                    for reverse in (False, True):
                        assert bulky.chunk(after, until, size, reverse) == plain.chunk(
                            after, until, size, reverse), (after, until, size, reverse)
                assert bulky.walk(after, until, 4, None, 7) == plain.walk(
                    after, until, 4, None, 7)
                assert bulky.walk(after, until, 4, None, 7, True) == plain.walk(
                    after, until, 4, None, 7, True)
            if after >= plain.known_floor:
                assert bulky.after(after, 50) == plain.after(after, 50)


@pytest.mark.parametrize("seed", range(6))
def test_a_large_bulk_is_cut_where_one_change_at_a_time_would_cut_it_in_few_sums(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes bound cuts inside a Bulk of thousands of changes (an MSET of 100k keys on
    a feed full of earlier ones: issue 12's heavy MSET) at the same change as dropping
    them one at a time, in a few dozen sums: one block sum per change of the last block
    was 30 ms of that MSET's apply, on the event loop."""
    rng = random.Random(seed)
    n = rng.choice([3000, 5000, 9000])
    keys = [b"k:%06d" % i for i in range(n)]
    values = [b"v" * rng.randrange(0, 40) for _ in range(n)]
    sums = [0]
    sizes = Bulk.sizes

    def counted(self: Bulk, lo: int, hi: int) -> int:
        sums[0] += 1
        return sizes(self, lo, hi)

    limit = rng.randrange(40_000, 300_000)
    bulky, plain = ChangeFeed(10**6, limit), ChangeFeed(10**6, limit)
    monkeypatch.setattr(Bulk, "sizes", counted)
    for index in (1, 2, 3):
        big = Bulk(index, 0, "mset", keys, values)
        sums[0] = 0
        bulky.append(index, [big])
        assert sums[0] <= n // 1024 + 2 * 11 + 4, sums[0]  # blocks, then halvings
        plain.append(index, expand([big]))
        assert bulky.bytes == plain.bytes <= limit and len(bulky) == len(plain)
        assert bulky.floor == plain.floor and bulky.first == plain.first


def test_a_bulk_and_the_changes_made_from_it_are_untracked_by_the_collector() -> None:
    """An MSET's key and value lists, kept in the feed, must not be walked by every full
    collection (issue 12: 1M MSET keys in the tail were 2M references per full pass, on
    the event loop): they are tuples of bytes, which CPython stops tracking at the next
    collection (reading some of its changes does not change that)."""
    kv = KVStateMachine()
    pairs = [x for i in range(1000) for x in (b"k%04d" % i, b"v%d" % i)]
    kv.apply(encode_entry([b"MSET", *pairs], T0), index=7)
    (bulk,) = kv.last_records
    assert kv.feed.after((7, 0), 600)[-1] == Change(7, 600, "mset", b"k0600", b"v600", None)
    gc.collect()
    assert not gc.is_tracked(bulk.keys)
    assert not gc.is_tracked(bulk.values)


def test_an_mset_is_recorded_as_one_bulk_and_read_as_its_changes() -> None:
    kv = KVStateMachine()
    pairs = [x for i in range(200) for x in (b"k%03d" % (i % 150), b"v%d" % i)]  # repeats
    kv.apply(encode_entry([b"MSET", *pairs], T0), index=7)
    assert [type(r) for r in kv.last_records] == [Bulk]
    changes = kv.last_changes
    assert [c.id for c in changes] == [(7, p) for p in range(150)]
    assert changes[3] == Change(7, 3, "mset", b"k003", b"v153", None)  # the last value
    assert kv.feed.after((7, 148), 10) == [changes[149]]
    copy = KVStateMachine()  # through the snapshot's bytes: the same changes
    copy.restore(kv.snapshot())
    assert list(copy.feed.state().changes) == changes == list(kv.feed.state().changes)


def test_retained_changes_are_not_objects_the_garbage_collector_walks() -> None:
    """A full collection walks every tracked object, on the loop: a 100k-change tail of
    ``Change`` objects (a tuple subclass, always tracked) cost 36-71 ms a collection. The
    feed keeps plain tuples, which CPython stops tracking after their first collection."""
    feed = ChangeFeed(retention_entries=100_000)
    gc.collect()
    before = len(gc.get_objects())
    for index in range(1, 10_001):
        feed.append(index, [Change(index, 0, "set", b"k%d" % index, b"v", None)])
    gc.collect()
    assert len(gc.get_objects()) - before < 500
    assert len(feed) == 10_000
    assert feed.last == Change(10_000, 0, "set", b"k10000", b"v", None)
    assert feed.after((9_998, 0), 10) == [Change(9_999, 0, "set", b"k9999", b"v", None),
                                          Change(10_000, 0, "set", b"k10000", b"v", None)]
    assert all(type(change) is Change for change in feed.after((0, 0), 10_000))


def test_retention_also_bounds_the_changes_kept() -> None:
    """An entry of many changes (a leader's write runs: 32 SETs an entry) counts each
    against ``retention_entries``: the feed keeps at most that many changes, cutting into
    the oldest Bulk if it must, as long as entries of one change kept it (attack24: a feed
    32 times longer for the same bound)."""
    feed = ChangeFeed(retention_entries=10)
    for index in (1, 2, 3):
        feed.append(index, [change(index, p, key=b"k%d" % p) for p in range(4)])
    assert len(feed) == 10 and feed.floor == (1, 1)
    assert ids(feed.after(feed.floor, 20))[0] == (1, 2)
    feed.append(4, [Bulk(4, 0, "mset", [b"m%d" % i for i in range(8)], [b"v"] * 8)])
    assert len(feed) == 10 and feed.floor == (3, 1)  # two of entry 3's four go
    feed.append(5, [Bulk(5, 0, "mset", [b"n%d" % i for i in range(25)], [b"v"] * 25)])
    assert len(feed) == 10 and feed.floor == (5, 14)  # the rest, and 15 of entry 5's
    assert ids(feed.after(feed.floor, 20)) == [(5, p) for p in range(15, 25)]
