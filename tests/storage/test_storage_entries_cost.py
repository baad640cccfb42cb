"""DiskStorage.entries with a byte budget touches only the entries it returns.

It once walked the in-memory log from its head to ``lo`` (``itertools.islice``) on every
call, and the leader calls it for every append to every follower: the leader's CPU per
SET rose with the log held since the last snapshot, the more so the more followers
(tests/bench/bench_scale.py). Counting the element reads proves the cost without timing.
"""

from __future__ import annotations

from collections.abc import Iterator

from storage_model import entry, reopen

from wire.raft import Entry


class CountingList(list[Entry]):
    """A list that counts the elements read through iteration and indexing."""

    reads = 0

    def __iter__(self) -> Iterator[Entry]:
        for e in super().__iter__():
            CountingList.reads += 1
            yield e

    def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
        got = super().__getitem__(index)
        CountingList.reads += len(got) if isinstance(index, slice) else 1
        return got


def test_a_budgeted_read_at_the_log_tail_reads_only_what_it_returns(tmp_path) -> None:
    s = reopen(tmp_path)
    s.append([entry(i, 1, b"x" * 10) for i in range(1, 5_001)])
    s._entries = CountingList(s._entries)  # the in-memory log since the snapshot
    CountingList.reads = 0
    got = s.entries(4_998, 5_001, max_bytes=1_000_000)
    assert [e.index for e in got] == [4_998, 4_999, 5_000]
    assert CountingList.reads <= 3
    CountingList.reads = 0
    assert [e.index for e in s.entries(4_998, 5_001, max_bytes=1)] == [4_998]
    assert CountingList.reads <= 2  # the first entry, and the one that broke the budget
    s.close()
