"""Recovery on open: torn tails are cut, any other damage is a CorruptionError; I/O errors
make the storage refuse writes."""

from __future__ import annotations

import errno
import os

import pytest
from storage_model import CONFIG, entries, entry, reopen, wal_end

from raftkv.storage import CorruptionError, SnapshotNotWritten, StorageFailure
from raftkv.storage import records as rec
from raftkv.storage import wal as wal_mod
from raftkv.storage.disk_storage import SNAPSHOT_HEADROOM
from wire.raft import HardState, SnapshotMeta

SEG1 = "wal-0000000000000001.log"


def three_groups(path, segment_size: int = 1 << 20) -> list[int]:
    """Write three synced groups; return the segment size after each (group boundaries)."""
    s = reopen(path, segment_size=segment_size)
    ends = [wal_end(path / SEG1)]
    for g in range(3):
        s.append(entries(g * 3 + 1, g * 3 + 3, term=1, size=30))
        s.set_hard_state(HardState(1, 1, g * 3))
        s.sync()
        ends.append(wal_end(path / SEG1))
    s.close()
    assert os.path.getsize(path / SEG1) == ends[-1]  # a clean close cut the zeros ahead
    return ends


def damage(path, offset: int, data: bytes | None = None, cut: int | None = None) -> None:
    raw = bytearray(path.read_bytes())
    if data is not None:
        raw[offset : offset + len(data)] = data
    if cut is not None:
        del raw[cut:]
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "how",
    ["short header", "short payload", "trailing zeros", "zeros only"],
)
def test_torn_final_record_is_truncated_and_the_node_starts(tmp_path, how):
    ends = three_groups(tmp_path)
    seg = tmp_path / SEG1
    last_group_start = ends[2]
    if how == "short header":
        damage(seg, 0, cut=last_group_start + 5)
    elif how == "short payload":
        damage(seg, 0, cut=last_group_start + rec.FRAME.size + 20)
    elif how == "trailing zeros":
        with open(seg, "ab") as f:
            f.write(b"\0" * 4096)
    else:  # the final group's pages never reached the disk, the size did
        raw = seg.read_bytes()
        seg.write_bytes(raw[:last_group_start] + b"\0" * (len(raw) - last_group_start))
    size = os.path.getsize(seg)
    s = reopen(tmp_path)
    if how == "trailing zeros":
        assert s.last_index() == 9
    else:
        assert s.last_index() == 6
        assert s.initial_state()[0] == HardState(1, 1, 3)
    if how in ("trailing zeros", "zeros only"):
        # Zeros from a record boundary on are what space allocated ahead looks like: the
        # segment's end, kept for the next groups, not a repair.
        assert os.path.getsize(seg) == size
        assert s.recovery_notes == []
    else:
        assert os.path.getsize(seg) == last_group_start  # cut back to the last good record
        assert any("truncated torn tail" in note for note in s.recovery_notes)
    # The repaired segment takes new appends and they survive another restart.
    s.append(entries(s.last_index() + 1, 12, term=2))
    s.sync()
    s.close()
    s = reopen(tmp_path)
    assert s.last_index() == 12
    assert s.recovery_notes == []
    s.close()


def final_record_start(path, end: int) -> int:
    """Offset of the last record of a segment whose records end at ``end``."""
    pos = wal_mod.HEADER.size
    while True:
        length, _ = rec.FRAME.unpack_from(path.read_bytes(), pos)
        nxt = pos + rec.FRAME.size + length
        if nxt == end:
            return pos
        pos = nxt


@pytest.mark.parametrize("final", ["hard state", "entries"])
def test_any_bit_flip_in_the_final_record_is_corruption_not_a_torn_tail(tmp_path, final):
    """The final record is complete: a flipped bit anywhere in it (length, checksum or
    payload) is damage to what may be an acknowledged entry or vote. The node must refuse
    to start and name file and offset, never truncate it away as a torn write."""
    ends = three_groups(tmp_path)
    seg = tmp_path / SEG1
    if final == "entries":  # a group of entries only: the final record is acknowledged data
        s = reopen(tmp_path)
        s.append(entries(10, 11, term=1, size=20))
        s.sync()
        s.close()
        ends.append(os.path.getsize(seg))
    good = seg.read_bytes()
    start = final_record_start(seg, ends[-1])
    assert (start // wal_mod.SECTOR) == (ends[-1] - 1) // wal_mod.SECTOR  # within one sector
    flips = 0
    for offset in range(start, ends[-1]):
        for bit in range(8):
            damage(seg, offset, bytes([good[offset] ^ (1 << bit)]))
            with pytest.raises(CorruptionError) as info:
                reopen(tmp_path)
            assert (info.value.path, info.value.offset) == (str(seg), start), (offset, bit)
            assert f"{SEG1}: corrupt at byte offset {start}" in str(info.value)
            assert seg.read_bytes()[: len(good)] == good[:offset] + bytes(
                [good[offset] ^ (1 << bit)]
            ) + good[offset + 1 :]  # nothing was cut
            seg.write_bytes(good)
            flips += 1
    assert flips >= 8 * 12
    s = reopen(tmp_path)  # undamaged, it opens with nothing repaired
    assert s.recovery_notes == []
    s.close()


def test_final_record_with_an_unwritten_sector_is_a_torn_tail(tmp_path):
    """A record spanning sectors whose later sectors never reached the disk (zeros, the
    size did): a torn write, truncated; the same record complete but damaged is not."""
    s = reopen(tmp_path)
    s.append(entries(1, 2, term=1))
    s.sync()
    before = wal_end(tmp_path / SEG1)
    s.append([entry(3, 1, b"x" * 3000)])
    s.sync()
    s.close()
    seg = tmp_path / SEG1
    good = seg.read_bytes()
    boundary = (before // wal_mod.SECTOR + 2) * wal_mod.SECTOR
    damage(seg, boundary, b"\0" * wal_mod.SECTOR)  # one sector in the middle unwritten
    s = reopen(tmp_path)
    assert s.last_index() == 2
    assert os.path.getsize(seg) == before
    assert any(f"truncated torn tail of {SEG1} at byte {before}" in n for n in s.recovery_notes)
    s.close()
    seg.write_bytes(good)
    damage(seg, boundary, b"\0" * (wal_mod.SECTOR - 1))  # not a whole sector: damage
    with pytest.raises(CorruptionError, match="not a torn write") as info:
        reopen(tmp_path)
    assert info.value.offset == before


def test_corrupt_middle_record_names_file_and_offset(tmp_path):
    ends = three_groups(tmp_path)
    target = ends[1] + rec.FRAME.size + 2  # inside group 2's first record payload
    damage(tmp_path / SEG1, target, b"\xaa")
    with pytest.raises(CorruptionError) as info:
        reopen(tmp_path)
    assert info.value.path == str(tmp_path / SEG1)
    assert info.value.offset == ends[1]
    assert f"offset {ends[1]}" in str(info.value) and SEG1 in str(info.value)
    assert os.path.getsize(tmp_path / SEG1) == ends[3]  # nothing was cut


def test_bad_length_field_in_the_middle_is_corruption(tmp_path):
    ends = three_groups(tmp_path)
    damage(tmp_path / SEG1, ends[1], (7).to_bytes(4, "little"))
    with pytest.raises(CorruptionError) as info:
        reopen(tmp_path)
    assert info.value.offset == ends[1]


def test_zero_hole_followed_by_data_is_corruption_not_a_torn_tail(tmp_path):
    ends = three_groups(tmp_path)
    damage(tmp_path / SEG1, ends[1], b"\0" * (ends[2] - ends[1]))
    with pytest.raises(CorruptionError) as info:
        reopen(tmp_path)
    assert info.value.offset == ends[1]


def multi_segment(path) -> list[str]:
    s = reopen(path, segment_size=200)
    for i in range(1, 16):
        s.append([entry(i, 1, b"z" * 40)])
        s.sync()
    s.close()
    names = sorted(n for n in os.listdir(path) if n.startswith("wal-"))
    assert len(names) >= 3
    return names


def test_torn_tail_of_an_earlier_segment_is_corruption(tmp_path):
    names = multi_segment(tmp_path)
    seg = tmp_path / names[0]
    size = os.path.getsize(seg)
    damage(seg, 0, cut=size - 2)
    with pytest.raises(CorruptionError) as info:
        reopen(tmp_path)
    assert info.value.path == str(seg)


def test_bad_segment_header_is_corruption(tmp_path):
    names = multi_segment(tmp_path)
    damage(tmp_path / names[-1], 0, b"NOTAWAL!")
    with pytest.raises(CorruptionError, match="magic") as info:
        reopen(tmp_path)
    assert (info.value.path, info.value.offset) == (str(tmp_path / names[-1]), 0)


def test_missing_middle_segment_is_corruption(tmp_path):
    names = multi_segment(tmp_path)
    os.unlink(tmp_path / names[1])
    with pytest.raises(CorruptionError, match="missing") as info:
        reopen(tmp_path)
    assert info.value.path == str(tmp_path / names[1])


def test_checksummed_but_undecodable_record_is_corruption(tmp_path):
    three_groups(tmp_path)
    with open(tmp_path / SEG1, "ab") as f:
        f.write(rec.frame(b"\x92\x63\x01"))  # msgpack [99, 1]: unknown kind
    with pytest.raises(CorruptionError, match="unknown record kind 99"):
        reopen(tmp_path)


def test_gap_between_entries_is_corruption(tmp_path):
    three_groups(tmp_path)
    with open(tmp_path / SEG1, "ab") as f:
        f.write(rec.entries_record([entry(20, 1)]))
    with pytest.raises(CorruptionError, match="entries start at 20, log ends at 9"):
        reopen(tmp_path)


def test_corrupt_snapshot_is_corruption(tmp_path):
    s = reopen(tmp_path)
    s.append(entries(1, 4, term=1))
    s.compact(SnapshotMeta(3, 1, CONFIG), b"0123456789" * 10)
    s.close()
    snap = next(p for p in tmp_path.iterdir() if p.suffix == ".snap")
    raw = bytearray(snap.read_bytes())
    raw[-20] ^= 1
    snap.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="checksum") as info:
        reopen(tmp_path)
    assert info.value.path == str(snap)


def test_segment_header_constant_is_what_files_start_with(tmp_path):
    three_groups(tmp_path)
    assert (tmp_path / SEG1).read_bytes()[: wal_mod.HEADER.size] == wal_mod.segment_header(1)


# -- I/O failures: StorageFailure, then no more writes (fsyncgate) -------------------------


def fail_with(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def test_enospc_on_write_fails_and_refuses_further_writes(tmp_path, monkeypatch):
    s = reopen(tmp_path, fsync="always")
    s.append(entries(1, 3, term=1))
    s.sync()
    s.append(entries(4, 6, term=1))
    monkeypatch.setattr(os, "pwrite", fail_with(errno.ENOSPC))
    with pytest.raises(StorageFailure, match="disk full"):
        s.sync()
    assert s.failed
    writes: list[int] = []
    monkeypatch.setattr(os, "write", lambda fd, b: writes.append(fd) or len(b))
    monkeypatch.setattr(os, "pwrite", lambda fd, b, o: writes.append(fd) or len(b))
    for op in (
        lambda: s.sync(),
        lambda: s.append(entries(7, 7, term=1)),
        lambda: s.set_hard_state(HardState(9, 9, 0)),
        lambda: s.compact(SnapshotMeta(2, 1, CONFIG), b""),
        lambda: s.install_snapshot(SnapshotMeta(20, 1, CONFIG), b""),
        lambda: s.snapshot_writer(SnapshotMeta(20, 1, CONFIG)),
    ):
        with pytest.raises(StorageFailure, match="refuses writes"):
            op()
    assert writes == []
    s.close()
    monkeypatch.undo()
    s = reopen(tmp_path)
    assert s.last_index() == 3
    s.close()


def test_partial_write_then_enospc_recovers_the_synced_prefix(tmp_path, monkeypatch):
    s = reopen(tmp_path, fsync="always")
    s.append(entries(1, 3, term=1))
    s.sync()
    s.append(entries(4, 30, term=1, size=50))
    real_pwrite = os.pwrite
    state = {"first": True}

    def half_then_full(fd, data, offset):
        if state["first"]:
            state["first"] = False
            return real_pwrite(fd, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", half_then_full)
    with pytest.raises(StorageFailure):
        s.sync()
    monkeypatch.undo()
    s.close()
    s = reopen(tmp_path)
    assert s.last_index() == 3
    assert any("torn tail" in n for n in s.recovery_notes)
    s.close()


def test_fsync_error_fails_and_refuses_further_writes(tmp_path, monkeypatch):
    s = reopen(tmp_path, fsync="always")
    s.append(entries(1, 3, term=1))
    monkeypatch.setattr(os, "fsync", fail_with(errno.EIO))
    with pytest.raises(StorageFailure, match="Input/output error"):
        s.sync()
    monkeypatch.undo()
    with pytest.raises(StorageFailure):
        s.sync()  # never retry an fsync that failed: the page cache state is unknown
    s.close()


def test_enospc_while_writing_a_snapshot_leaves_the_old_one_and_storage_works(
    tmp_path, monkeypatch
):
    """A snapshot that does not fit changed nothing visible: it is SnapshotNotWritten (the
    node may retry later), not a StorageFailure that stops the node."""
    s = reopen(tmp_path, fsync="always")
    s.append(entries(1, 5, term=1))
    s.sync()
    monkeypatch.setattr(os, "pwrite", fail_with(errno.ENOSPC))
    with pytest.raises(SnapshotNotWritten, match="No space left") as info:
        s.compact(SnapshotMeta(4, 1, CONFIG), b"big" * 1000)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert not s.failed
    assert s.snapshot_meta().index == 0
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp") and "spare-" not in n]
    s.append(entries(6, 7, term=1))  # the log goes on, and the retry succeeds
    s.sync()
    s.compact(SnapshotMeta(4, 1, CONFIG), b"big" * 1000)
    s.close()
    s = reopen(tmp_path)
    assert (s.snapshot_meta().index, s.last_index()) == (4, 7)
    s.close()


def storage_two_blocks_over_the_headroom(tmp_path, monkeypatch):
    """A storage with 5 entries on a disk that reports the snapshot headroom plus two
    blocks free; and the block size."""
    s = reopen(tmp_path, fsync="always")
    s.append(entries(1, 5, term=1))
    s.sync()
    real = os.statvfs(tmp_path)
    free_blocks = SNAPSHOT_HEADROOM // real.f_frsize + 2
    fake = os.statvfs_result((*real[:4], free_blocks, *real[5:]))
    monkeypatch.setattr(os, "statvfs", lambda path: fake)
    return s, real.f_frsize


def test_a_snapshot_that_would_leave_too_little_space_is_not_written(tmp_path, monkeypatch):
    s, block = storage_two_blocks_over_the_headroom(tmp_path, monkeypatch)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SnapshotNotWritten, match="not enough free space"):
        s.compact(SnapshotMeta(4, 1, CONFIG), b"x" * (3 * block))
    assert sorted(os.listdir(tmp_path)) == before  # not even a temp file was written
    s.compact(SnapshotMeta(4, 1, CONFIG), b"x" * 100)  # a small one still fits
    assert not s.failed and s.snapshot_meta().index == 4
    s.close()


def test_a_streamed_snapshot_checks_the_space_for_each_piece_as_it_comes(tmp_path, monkeypatch):
    """Pieces from an iterator (the node encodes its own snapshot as it is written): the
    total is not known first, so each piece is checked before it is written; the piece
    that would leave too little space stops the snapshot, and nothing else fails."""
    s, block = storage_two_blocks_over_the_headroom(tmp_path, monkeypatch)
    before = sorted(os.listdir(tmp_path))
    asked: list[int] = []

    def pieces():
        for n in (100, 100, 3 * block, 100):
            asked.append(n)
            yield b"x" * n

    with pytest.raises(SnapshotNotWritten, match="not enough free space"):
        s.compact(SnapshotMeta(4, 1, CONFIG), pieces())
    assert asked == [100, 100, 3 * block]  # stopped at the piece that did not fit
    assert sorted(os.listdir(tmp_path)) == before  # the temp file is gone
    s.compact(SnapshotMeta(4, 1, CONFIG), iter([b"y" * 100, b"z" * 50]))
    assert not s.failed and s.snapshot_meta().index == 4
    assert s.snapshot_data() == b"y" * 100 + b"z" * 50
    s.close()


def test_open_fsyncs_every_file_it_trusts_and_the_directory(tmp_path, monkeypatch):
    """What an earlier process wrote may be only in the page cache (it died before its
    fsync): open makes it durable before acting on it, segments, snapshot, meta and the
    directory, each fsync before the first read of that file."""
    names = multi_segment(tmp_path)
    s = reopen(tmp_path)
    s.compact(SnapshotMeta(3, 1, CONFIG), b"state@3")
    s.close()
    expected = {str(tmp_path / n) for n in os.listdir(tmp_path) if n != "LOCK"}
    assert {str(tmp_path / n) for n in names[-2:]} <= expected
    synced: list[str] = []
    read_before_sync: list[str] = []
    real_fsync, real_open = os.fsync, open

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def spy_open(path, *args, **kwargs):
        if str(path) in expected and str(path) not in synced:
            read_before_sync.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr("builtins.open", spy_open)
    s = reopen(tmp_path, fsync="always")
    monkeypatch.undo()
    assert expected <= set(synced), expected - set(synced)
    assert str(tmp_path) in synced[synced.index(max(expected, key=synced.index)) :]
    assert read_before_sync == []
    s.close()
