"""A data directory the node cannot use is refused at start with one clear line.

Storage-level tests open the directory in-process; the real-process tests run
``raftkv serve`` and look at what an operator sees: exit status 1 and exactly one line on
stderr naming the cause (never a traceback).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_model import entries, reopen

from chaos.cluster import free_ports
from raftkv.storage import DataDirNotWritable, open_storage
from raftkv.storage import records as rec
from wire.raft import ClusterConfig, HardState, Member

ROOT = os.geteuid() == 0
SEG1 = "wal-0000000000000001.log"


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Make ``path`` refuse new entries, for root too: root passes permission checks, so
    as root the directory is made immutable (chattr +i), otherwise read-only (chmod)."""
    if ROOT:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o555)
    try:
        yield
    finally:
        if ROOT:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o755)


def test_an_unwritable_data_dir_is_refused_at_open_not_at_the_first_roll(tmp_path):
    """Existing files stay writable in such a directory (the LOCK, the active segment),
    so without a probe the node starts and fails later, at its first new file."""
    s = reopen(tmp_path)
    s.append(entries(1, 3, term=1))
    s.sync()
    s.close()
    with unwritable(tmp_path):
        with pytest.raises(DataDirNotWritable, match="not writable") as info:
            reopen(tmp_path)
        assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    s = reopen(tmp_path)  # writable again: it opens, with nothing lost and no probe left
    assert s.last_index() == 3
    assert s.recovery_notes == []
    s.close()


def test_a_file_where_the_data_dir_should_be_is_refused(tmp_path):
    (tmp_path / "node").write_text("x")
    with pytest.raises(DataDirNotWritable, match="not a directory"):
        reopen(tmp_path / "node")
    with pytest.raises(DataDirNotWritable, match="cannot create data dir"):
        reopen(tmp_path / "node" / "sub")
    assert (tmp_path / "node").read_text() == "x"


# -- real processes ------------------------------------------------------------------------


def serve(data_dir: Path, wrap: list[str] | None = None, timeout: float = 15.0
          ) -> subprocess.CompletedProcess[str]:
    """Run one single-node ``raftkv serve`` that is expected to exit on its own."""
    client, peer = free_ports(2)
    cmd = [sys.executable, "-m", "raftkv", "serve", "--id", "1",
           "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
           "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", str(data_dir)]
    return subprocess.run([*(wrap or []), *cmd], capture_output=True, text=True,
                          timeout=timeout)


def init_dir(path: Path) -> None:
    config = ClusterConfig((Member(1, "127.0.0.1:1"),))
    s = open_storage(path, "raftkv", 1, config, fsync="never")
    s.append(entries(1, 3, term=1))
    s.set_hard_state(HardState(1, 1, 3))
    s.sync()
    s.close()


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.skipif(not ROOT, reason="mounting a read-only bind mount needs root")
def test_serve_on_a_read_only_mount_stops_with_one_line(tmp_path):
    data = tmp_path / "data"
    init_dir(data)
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    result = serve(data, wrap=["unshare", "-m", "sh", "-c", script, "sh", str(data)])
    line = one_line(result)
    assert line.startswith("raftkv serve: refusing to start: ")
    assert f"data dir {data} is not writable: Read-only file system" in line


def test_serve_refuses_a_bit_flip_in_the_final_wal_record_naming_file_and_offset(tmp_path):
    data = tmp_path / "data"
    init_dir(data)
    seg = data / SEG1
    raw = bytearray(seg.read_bytes())
    pos = 20
    while True:  # find the final record
        length, _ = rec.FRAME.unpack_from(raw, pos)
        if pos + rec.FRAME.size + length == len(raw):
            break
        pos += rec.FRAME.size + length
    raw[-1] ^= 0x04  # inside the final record (the hard state: maybe a vote)
    seg.write_bytes(bytes(raw))
    line = one_line(serve(data))
    assert line.startswith(f"raftkv serve: refusing to start: {seg}: corrupt at byte offset "
                           f"{pos}: checksum mismatch")
    assert seg.read_bytes() == bytes(raw)  # nothing truncated
