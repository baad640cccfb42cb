"""attack17 (walpre): the recovery note of a torn tail counts the space allocated ahead
as "dropped".

A kill -9 in the middle of a group's pwrite leaves the group's first bytes, then the zeros
allocated ahead. Recovery cuts the torn record and says how much it dropped: it reports
the file's size less the records' end, so the zeros ahead (up to 4 MiB, never data) are
counted as dropped log bytes. A live kill loop (64 KiB SETs) logged "truncated torn tail
... (2226199 bytes dropped: checksum mismatch)" for one torn record: an operator reads
that 2 MB of the log were thrown away. (The truncation itself is right; the figure is
not: it should count the torn bytes, and name the space ahead apart.)"""

from __future__ import annotations

import os
import re

from storage_model import entries, reopen, wal_end

from wire.raft import HardState

SEG1 = "wal-0000000000000001.log"


def test_a_torn_tail_note_counts_the_torn_bytes_not_the_space_ahead(tmp_path) -> None:
    s = reopen(tmp_path, fsync="always")
    for g in range(3):
        s.append(entries(g * 3 + 1, g * 3 + 3, term=1, size=30))
        s.set_hard_state(HardState(1, 1, g * 3))
        s.sync()
    s.close(sync=False)  # a kill: the zeros ahead stay
    end = wal_end(tmp_path / SEG1)
    size = os.path.getsize(tmp_path / SEG1)
    assert size - end > 60_000  # (64 KiB allocated ahead)
    raw = bytearray((tmp_path / SEG1).read_bytes())
    # A 600-byte record whose first sector reached the file and whose next did not.
    cut = end + (-end % 512 or 512)
    torn = (600).to_bytes(4, "little") + bytes([1, 2, 3, 4]) + b"x" * (cut - end - 8)
    raw[end : end + len(torn)] = torn
    (tmp_path / SEG1).write_bytes(bytes(raw))
    s = reopen(tmp_path)
    assert s.last_index() == 9
    (note,) = s.recovery_notes
    dropped = int(re.search(r"\((\d+) bytes dropped", note).group(1))  # type: ignore[union-attr]
    s.close()
    assert dropped <= len(torn), note
