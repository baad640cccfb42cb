"""Small disks for the disk-full nemesis: each node's data directory on its own tmpfs.

``TmpfsDisks.mount`` puts a tmpfs of ``size`` on each data directory before the nodes
start (root only: mount needs CAP_SYS_ADMIN); ``fill`` allocates a ballast file that
leaves ``SLACK`` bytes free, so the node's next writes that need new space find the disk
full; ``free`` removes it. The WAL writes into space it allocated ahead
(``raftkv.storage.wal``), so a node goes on until that is used up: ``wal_space_ahead``
says how much that is, for the nemesis to write that much through the node.
``stopped_cleanly`` tells whether a node that exited on a full disk did so the way it
must: one ``raftkv serve: stopping: ...`` line naming the full disk, no traceback.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from raftkv.storage.errors import CorruptionError, UnsupportedFormat
from raftkv.storage.wal import parse_segment_name, scan_segment

BALLAST = "chaos-ballast"  # not a RaftKV file name: recovery ignores it
SLACK = 4096  # one page: the node fills it within a second or two of writes
SIZE = "32m"


class TmpfsDisks:
    def __init__(self, size: str = SIZE) -> None:
        self.size = size
        self.mounts: dict[int, Path] = {}

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0

    def mount(self, node: int, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", f"chaos-n{node}",
                        str(path)], check=True, capture_output=True)
        self.mounts[node] = path

    def unmount_all(self) -> None:
        for path in self.mounts.values():
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)
        self.mounts.clear()

    def fill(self, node: int) -> str:
        """Leave ``SLACK`` bytes free on ``node``'s disk; returns what was done."""
        path = self.mounts[node]
        st = os.statvfs(path)
        free = st.f_bavail * st.f_frsize
        size = max(0, free - SLACK)
        fd = os.open(path / BALLAST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if size:
                os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        return f"{size // 1024} KiB ballast, {SLACK // 1024} KiB left"

    def free(self, node: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.mounts[node] / BALLAST).unlink()


def wal_space_ahead(data_dir: Path) -> int:
    """Bytes the newest WAL segment in ``data_dir`` holds allocated past its records: what
    the node can still write to its log on a full disk (read only; 0 if it cannot tell)."""
    try:
        seqs = sorted(s for n in os.listdir(data_dir) if (s := parse_segment_name(n)))
        if not seqs:
            return 0
        path = data_dir / f"wal-{seqs[-1]:016d}.log"
        scan = scan_segment(str(path), seqs[-1], is_last=True)
    except (OSError, CorruptionError, UnsupportedFormat):  # mid-write, or gone meanwhile
        return 0
    return scan.size - scan.good_end


def stopped_cleanly(log: Path, since: int) -> bool:
    """Did the node's log, from byte ``since`` on, end with the one-line full-disk stop?"""
    try:
        with open(log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except OSError:
        return False
    lines = text.strip().splitlines()
    return ("Traceback" not in text and bool(lines)
            and lines[-1].startswith("raftkv serve: stopping: ")
            and "No space left on device" in lines[-1])
