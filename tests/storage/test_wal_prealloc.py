"""Space allocated ahead of the WAL's end (raftkv.storage.wal): the last segment ends in
zeros past its last record, which recovery takes as its end and writes over; any other
segment is cut to its records before the next one exists; a non-zero byte in the zeros,
or a bit flip in the last record, is still corruption."""

from __future__ import annotations

import errno
import os

import pytest
from storage_model import entries, entry, reopen, wal_end

from raftkv.storage import CorruptionError
from raftkv.storage import records as rec
from raftkv.storage import wal as wal_mod
from wire.raft import HardState

SEG1 = "wal-0000000000000001.log"


def segments(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.startswith("wal-"))


def crashed_with_space_ahead(path, groups: int = 3) -> tuple[int, int]:
    """Synced groups, then a crash (no clean close): the segment keeps its zeros ahead.
    Returns (end of the records, file size)."""
    s = reopen(path, fsync="always")
    for g in range(groups):
        s.append(entries(g * 3 + 1, g * 3 + 3, term=1, size=30))
        s.set_hard_state(HardState(1, 1, g * 3))
        s.sync()
    s.close(sync=False)  # as a kill: no clean close, nothing cut
    end, size = wal_end(path / SEG1), os.path.getsize(path / SEG1)
    assert size > end  # zeros ahead, as a crash leaves them
    assert (path / SEG1).read_bytes()[end:] == bytes(size - end)
    return end, size


def test_zero_tail_of_the_last_segment_is_its_end_and_is_written_over(tmp_path):
    end, size = crashed_with_space_ahead(tmp_path)
    s = reopen(tmp_path, fsync="always")
    assert s.last_index() == 9
    assert s.recovery_notes == []  # not a repair: nothing was torn
    assert os.path.getsize(tmp_path / SEG1) == size  # the space ahead is kept...
    s.append(entries(10, 12, term=2))
    s.sync()
    assert os.path.getsize(tmp_path / SEG1) == size  # ...and the next group goes into it
    assert wal_end(tmp_path / SEG1) > end
    s.close(sync=False)
    s = reopen(tmp_path, fsync="always")  # restart, append, restart
    assert [e.term for e in s.entries(1, 13)] == [1] * 9 + [2] * 3
    s.append(entries(13, 13, term=2))
    s.sync()
    s.close()
    s = reopen(tmp_path)
    assert s.last_index() == 13 and s.recovery_notes == []
    s.close()
    assert os.path.getsize(tmp_path / SEG1) == wal_end(tmp_path / SEG1)  # a clean close cuts


def test_zero_tail_of_an_earlier_segment_is_corruption(tmp_path):
    s = reopen(tmp_path, segment_size=400)
    for i in range(1, 20):
        s.append([entry(i, 1, b"z" * 40)])
        s.sync()
    s.close()
    first = tmp_path / segments(tmp_path)[0]
    good_end = os.path.getsize(first)
    with open(first, "ab") as f:
        f.write(bytes(4096))
    with pytest.raises(CorruptionError) as info:
        reopen(tmp_path)
    assert (info.value.path, info.value.offset) == (str(first), good_end)


def test_segments_before_the_last_end_at_their_records(tmp_path):
    """Groups much smaller than the segment: each segment has zeros ahead while active,
    and none once the next exists (that is what lets the scan refuse zeros in them): space
    is allocated ahead only up to the segment size, and a roll for a snapshot install,
    which comes before that, first cuts the old segment (``Segment.seal``; a crash at each
    step of it: test_storage_crash's install tests)."""
    s = reopen(tmp_path, fsync="always", segment_size=2000)
    for i in range(1, 80):
        s.append([entry(i, 1, b"r" * 60)])
        s.sync()
        names = segments(tmp_path)
        active = tmp_path / names[-1]
        assert os.path.getsize(active) <= max(2000, wal_end(active))  # never past the roll
        for name in names[:-1]:
            assert os.path.getsize(tmp_path / name) == wal_end(tmp_path / name), name
    assert len(names) >= 3
    assert os.path.getsize(active) > wal_end(active)  # the active one has zeros ahead
    s.close(sync=False)
    s = reopen(tmp_path)
    assert [e.index for e in s.entries(1, 80)] == list(range(1, 80))
    s.close()


def test_space_ahead_is_bounded_and_the_spare_holds_none(tmp_path):
    s = reopen(tmp_path, fsync="never")  # the default segment size, 64 MiB
    ahead = []
    for i in range(1, 300):
        s.append([entry(i, 1, b"b" * 2000)])
        s.sync()
        ahead.append(os.path.getsize(tmp_path / SEG1) - wal_end(tmp_path / SEG1))
    assert max(ahead) <= wal_mod.PREALLOC_MAX
    assert min(ahead) >= 0 and ahead[0] == wal_mod.PREALLOC_MIN  # not 64 MiB up front
    assert ahead[-1] >= 300_000  # it grows with what the segment holds
    spares = [n for n in os.listdir(tmp_path) if n.startswith("spare-wal")]
    assert spares and all(os.path.getsize(tmp_path / n) == 0 for n in spares)
    s.close()


def test_a_torn_record_in_the_space_ahead_is_cut_and_the_segment_works_on(tmp_path):
    end, _ = crashed_with_space_ahead(tmp_path)
    seg = tmp_path / SEG1
    raw = bytearray(seg.read_bytes())
    # The next group reached the disk only up to a sector boundary inside its first
    # record: its header and first bytes are there, the rest reads as zeros.
    record = rec.entries_record(entries(10, 10, term=1, size=3000))
    cut = (end // wal_mod.SECTOR + 2) * wal_mod.SECTOR
    raw[end:cut] = record[: cut - end]
    seg.write_bytes(bytes(raw))
    s = reopen(tmp_path, fsync="always")
    assert s.last_index() == 9
    assert any(f"truncated torn tail of {SEG1} at byte {end}" in n for n in s.recovery_notes)
    assert os.path.getsize(seg) == end
    s.append(entries(10, 11, term=2))  # appends past the end, allocating again
    s.sync()
    assert os.path.getsize(seg) > wal_end(seg)
    s.close(sync=False)
    s = reopen(tmp_path)
    assert s.last_index() == 11 and s.term(11) == 2 and s.recovery_notes == []
    s.close()


def test_a_non_zero_byte_in_the_space_ahead_is_corruption(tmp_path):
    """Unlike etcd (which stops at the first zero length whatever follows), only zeros may
    follow the last record. One exception, etcd's torn-entry rule: a byte in the first
    record header's length field reads as a record whose data never reached the disk."""
    end, size = crashed_with_space_ahead(tmp_path)
    seg = tmp_path / SEG1
    good = seg.read_bytes()
    for offset in (end + 4, end + 8, end + 600, size - 1):
        raw = bytearray(good)
        raw[offset] = 0x20
        seg.write_bytes(bytes(raw))
        with pytest.raises(CorruptionError) as info:
            reopen(tmp_path)
        assert (info.value.path, info.value.offset) == (str(seg), end), offset
        assert seg.read_bytes() == bytes(raw)  # nothing was cut


def test_a_flipped_length_bit_of_the_last_record_reaching_into_zeros_is_corruption(tmp_path):
    """With zeros after it, a last record whose length was raised by a bit flip no longer
    runs past the file's end: its claimed tail is zeros, which alone would read as torn.
    It is a complete record (the length with that bit back checks out): corruption."""
    end, _ = crashed_with_space_ahead(tmp_path)
    seg = tmp_path / SEG1
    good = seg.read_bytes()
    start = wal_mod.HEADER.size
    while True:  # the last record's offset
        length, _ = rec.FRAME.unpack_from(good, start)
        if start + rec.FRAME.size + length == end:
            break
        start += rec.FRAME.size + length
    for bit in range(9, 16):  # raised by 512 .. 32 KiB: into the zeros, within the file
        raw = bytearray(good)
        rec.FRAME.pack_into(raw, start, length ^ (1 << bit), rec.FRAME.unpack_from(good, start)[1])
        seg.write_bytes(bytes(raw))
        with pytest.raises(CorruptionError, match="flipped bit") as info:
            reopen(tmp_path)
        assert info.value.offset == start
    seg.write_bytes(good)


def test_no_room_to_allocate_ahead_is_not_a_full_disk(tmp_path, monkeypatch):
    """Where the space ahead cannot be had (ENOSPC, or a file system without fallocate),
    the group's own write extends the file, as before: only the group must fit."""
    s = reopen(tmp_path, fsync="always")
    calls = []

    def refuse(fd, offset, length):
        calls.append(length)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    for i in range(1, 4):
        s.append([entry(i, 1, b"n" * 100)])
        s.sync()
    assert len(calls) == 3 and not s.failed
    assert os.path.getsize(tmp_path / SEG1) == wal_end(tmp_path / SEG1)
    monkeypatch.undo()
    s.close(sync=False)
    s = reopen(tmp_path)
    assert s.last_index() == 3
    s.close()
