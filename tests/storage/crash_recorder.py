"""Fault injection for crash-consistency tests: record every file-system state a crash could
leave behind while DiskStorage runs.

``FsRecorder`` wraps the ``os`` calls that mutate files (open with O_CREAT, write, pwrite,
ftruncate, posix_fallocate, replace, unlink, fsync, fdatasync). After each mutation inside
the data directory it copies the directory's files: those are the states a process kill
leaves. It also checks the fsync discipline that makes these states the complete list for
a *power loss* as well:
- at most one non-temp file holds unsynced data at any time, and a write never starts
  while a rename/unlink is not yet made durable by a directory fsync;
- a file is fsynced before it is renamed into place;
- every storage call returns with no unsynced data or directory change left behind;
- ``fdatasync`` counts as a sync only of a file whose size is what its last ``fsync``
  saw (the WAL's rule: a group that changed the size is made durable by ``fsync``).
Under that discipline a power loss can only lose (part of) the latest write, so the
recorded states plus every cut of each WAL write ("torn" variants, including the variant
where the cut-off bytes read back as zeros) cover every crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from raftkv.storage.files import TMP_SUFFIX
from raftkv.storage.wal import SECTOR

Files = dict[str, bytes]


class DisciplineError(AssertionError):
    pass


class FsRecorder:
    def __init__(self, directory: str) -> None:
        self.dir = os.path.abspath(directory)
        self.states: list[tuple[Files, Any]] = []  # (files, tag)
        # (state index, file name, offset, bytes written, the file's bytes before)
        self.writes: list[tuple[int, str, int, bytes, bytes]] = []
        self._fdpath: dict[int, str] = {}
        self._dirty: set[str] = set()
        self._synced_size: dict[str, int] = {}  # path -> its size at its last fsync
        self._dir_dirty = False

    # -- patching --------------------------------------------------------------------------
    def install(self, monkeypatch) -> None:
        real = {n: getattr(os, n) for n in ("open", "write", "pwrite", "ftruncate", "fsync")}
        real |= {n: getattr(os, n) for n in ("replace", "unlink", "close", "fdatasync",
                                              "posix_fallocate", "fstat")}

        def ours(path: str) -> bool:
            return os.path.abspath(path).startswith(self.dir)

        def p_open(path, flags, mode=0o777, *, dir_fd=None):
            fd = real["open"](path, flags, mode)
            full = os.path.abspath(path)
            self._fdpath[fd] = full
            if ours(full) and flags & os.O_CREAT and not full.endswith("LOCK"):
                if not full.endswith(TMP_SUFFIX):
                    self._dir_dirty = True
                self._record()
            return fd

        def p_close(fd):
            self._fdpath.pop(fd, None)
            return real["close"](fd)

        def data_op(name: str) -> Callable[..., Any]:
            def op(fd, *args):
                path = self._fdpath.get(fd)
                if path is None or not ours(path):
                    return real[name](fd, *args)
                before = self.states[-1][0] if self.states else self._snapshot()
                self._before_data_write(path)
                result = real[name](fd, *args)
                self._record()
                base = os.path.basename(path)
                new = self.states[-1][0].get(base, b"")
                old = before.get(base, b"")
                if not base.startswith("wal-"):
                    return result
                if name == "write" and new.startswith(old):
                    self.writes.append((len(self.states) - 1, base, len(old), new[len(old):], old))
                elif name == "pwrite":
                    data, offset = bytes(args[0][:result]), args[1]
                    self.writes.append((len(self.states) - 1, base, offset, data, old))
                return result

            return op

        def p_fsync(fd):
            path = self._fdpath.get(fd)
            # Observed, not performed: the test models durability itself (and stays fast).
            result = real["fsync"](fd) if path is None or not ours(path) else None
            if path == self.dir:
                self._dir_dirty = False
            elif path is not None:
                self._dirty.discard(path)
                self._synced_size[path] = real["fstat"](fd).st_size
            return result

        def p_fdatasync(fd):
            path = self._fdpath.get(fd)
            if path is None or not ours(path):
                return real["fdatasync"](fd)
            if real["fstat"](fd).st_size == self._synced_size.get(path):
                self._dirty.discard(path)
            return None

        def p_replace(src, dst):
            src_full = os.path.abspath(src)
            if ours(src_full):
                if src_full in self._dirty:
                    raise DisciplineError(f"{src} renamed into place before it was fsynced")
                self._check_dir_clean(f"rename of {src}")
            result = real["replace"](src, dst)
            if ours(src_full):
                self._dir_dirty = True
                self._dirty.discard(src_full)
                # A descriptor follows its file: one still open on the temp file (a new
                # segment is appended to through the descriptor it was created with) now
                # writes to ``dst``, and must be checked and recorded as such.
                dst_full = os.path.abspath(dst)
                for fd, path in self._fdpath.items():
                    if path == src_full:
                        self._fdpath[fd] = dst_full
                self._record()
            return result

        def p_unlink(path):
            full = os.path.abspath(path)
            result = real["unlink"](path)
            if ours(full):
                if not full.endswith(TMP_SUFFIX):
                    self._check_dir_clean(f"unlink of {path}")
                    self._dir_dirty = True
                self._dirty.discard(full)
                self._record()
            return result

        monkeypatch.setattr(os, "open", p_open)
        monkeypatch.setattr(os, "close", p_close)
        monkeypatch.setattr(os, "write", data_op("write"))
        monkeypatch.setattr(os, "pwrite", data_op("pwrite"))
        monkeypatch.setattr(os, "ftruncate", data_op("ftruncate"))
        monkeypatch.setattr(os, "posix_fallocate", data_op("posix_fallocate"))
        monkeypatch.setattr(os, "fsync", p_fsync)
        monkeypatch.setattr(os, "fdatasync", p_fdatasync)
        monkeypatch.setattr(os, "replace", p_replace)
        monkeypatch.setattr(os, "unlink", p_unlink)

    # -- discipline ------------------------------------------------------------------------
    def _before_data_write(self, path: str) -> None:
        if path.endswith(TMP_SUFFIX):
            return  # temp files are invisible until renamed; only their rename is checked
        self._check_dir_clean(f"write to {path}")
        others = {p for p in self._dirty if p != path and not p.endswith(TMP_SUFFIX)}
        if others:
            raise DisciplineError(f"write to {path} while {others} hold unsynced data")
        self._dirty.add(path)

    def _check_dir_clean(self, what: str) -> None:
        if self._dir_dirty:
            raise DisciplineError(f"{what} before the previous directory change was fsynced")

    def check_clean(self) -> None:
        """Called after each storage call: everything it did must be durable."""
        dirty = {p for p in self._dirty if not p.endswith(TMP_SUFFIX)}
        if dirty or self._dir_dirty:
            raise DisciplineError(f"call returned with unsynced {dirty or 'directory'}")

    # -- states ----------------------------------------------------------------------------
    def _snapshot(self) -> Files:
        out: Files = {}
        for name in sorted(os.listdir(self.dir)):
            if name != "LOCK":
                with open(os.path.join(self.dir, name), "rb") as f:
                    out[name] = f.read()
        return out

    def _record(self) -> None:
        state = self._snapshot()
        if not self.states or self.states[-1][0] != state:
            self.states.append((state, None))

    def tag_since(self, start: int, tag: Any) -> None:
        for i in range(start, len(self.states)):
            if self.states[i][1] is None:
                self.states[i] = (self.states[i][0], tag)

    def torn_variants(self, every_byte_from: int) -> list[tuple[Files, Any, str]]:
        """Each WAL write cut at many offsets (every offset for writes recorded at or after
        state ``every_byte_from``), plus the same write with its unwritten part reading
        back as zeros at full length.

        A cut leaves the file ending there (as an append cut short does; for a write into
        space allocated ahead that is more than a crash can do, and recovery must cope all
        the same), or, at a sector boundary, the file as it was after the cut (space
        allocated ahead keeps its zeros; a process killed mid-write leaves a page
        boundary, a power loss a sector one).

        Zeros come only where a power loss can leave them: from the write's first byte (none
        of its data reached the disk, its size did) or from a sector boundary on (sectors
        are written whole: a write's data can stop only at one). A zero run that starts
        inside a sector is not a torn write but damage to written data; the scan must
        refuse it (test_storage_recovery checks that), so it is not a crash state here.
        """
        out: list[tuple[Files, Any, str]] = []
        for index, name, offset, data, old in self.writes:
            files, tag = self.states[index]
            new = files[name]
            head, rest = new[:offset], new[offset + len(data):]
            n = len(data)
            if index >= every_byte_from:
                cuts = range(n)
            else:
                cuts = sorted({*range(0, min(n, 10)), n // 2, n - 1, *range(10, n, 17)})
            label = f"{name} +{offset}"
            for k in cuts:
                torn = dict(files)
                torn[name] = head + data[:k]
                out.append((torn, tag, f"{label} cut at +{k}/{n} (state {index})"))
            first_boundary = -offset % SECTOR
            for k in range(first_boundary, n, SECTOR):
                if offset + k < len(old):
                    kept = dict(files)
                    kept[name] = head + data[:k] + old[offset + k:]
                    out.append((kept, tag, f"{label} stops at +{k}/{n} (state {index})"))
            for k in sorted({0, *range(first_boundary, n, SECTOR)}):
                zeros = dict(files)
                zeros[name] = head + data[:k] + b"\0" * (n - k) + rest
                out.append((zeros, tag, f"{label} zeroed from +{k}/{n} (state {index})"))
        return out
