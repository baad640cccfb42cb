"""Data directories whose files pass their checksums but hold what no node writes
(attack5 branch, round 5). Each test failed before its fix.

A CRC proves a record or snapshot intact, not sane: a file copied from a newer release,
a tool's bug, or a hand-edited directory has matching checksums. Round 2 covered what a
file *is* (FIFOs, devices, huge sparse segments); this covers what a well-framed file
*says*. Live, ``raftkv serve`` on a copy of a real directory with one thing crafted:

* a snapshot whose state does not decode (the next release's version 6, or garbage): a
  ``KVDecodeError`` traceback out of the trio nursery, not a refusal naming the file;
* a CONFIG entry in the WAL that does not decode: a ``ProtocolError`` traceback;
* a hard state at term 2**64-1, or an entry of that term: ``OverflowError`` tracebacks
  (the node cannot write its next hard state: term + 1 does not encode);
* a hard state at MAX_TERM + 1 (2**62), or a snapshot at term 2**63: the node starts and
  serves at a term every peer refuses as malformed (wire.raft.MAX_TERM), so in a real
  cluster it can never win or even take part in an election;
* a snapshot header claiming 4 GiB of metadata (sparse file): ``MemoryError`` under a
  1 GiB limit, and without one the node reads 4 GiB into memory before any check.

Each must be refused at start with one line naming the file (README, Storage), as the
peer port already refuses the same numbers and configurations in messages
(raftkv.raft.validation).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from chaos.cluster import free_ports
from raftkv.kv import KVStateMachine
from raftkv.kv.codec import encode_entry
from raftkv.storage import CorruptionError, open_storage
from raftkv.storage import records as rec
from raftkv.storage.fsync import FsyncPolicy
from raftkv.storage.snapshot_file import CRC, HEADER, MAGIC, VERSION, snapshot_name, write_snapshot
from wire.raft import (
    CONFIG,
    MAX_TERM,
    NORMAL,
    ClusterConfig,
    Entry,
    HardState,
    Member,
    SnapshotMeta,
)

CONFIG1 = ClusterConfig((Member(1, "127.0.0.1:1"),))


def _base(d: Path) -> None:
    """A closed one-node directory: entries 1-3 (term 1) committed."""
    s = open_storage(str(d), "raftkv", 1, CONFIG1, fsync="never")
    s.append([Entry(1, i, NORMAL, encode_entry([b"SET", b"k%d" % i, b"v"], 1))
              for i in range(1, 4)])
    s.set_hard_state(HardState(1, 1, 3))
    s.sync()
    s.close()


def _segment(d: Path) -> Path:
    return d / sorted(n for n in os.listdir(d) if n.startswith("wal-"))[-1]


def _append_records(d: Path, *payloads: list) -> Path:
    seg = _segment(d)
    with open(seg, "ab") as f:
        for payload in payloads:
            f.write(rec.frame(msgpack.packb(payload)))
    return seg


def _state() -> bytes:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"a", b"1"], 1))
    return kv.snapshot()


def _snapshot(d: Path, index: int, term: int, data: bytes) -> Path:
    # Written and renamed into place before its read-back check (which may refuse it).
    with contextlib.suppress(CorruptionError):
        write_snapshot(str(d), SnapshotMeta(index, term, CONFIG1), data,
                       FsyncPolicy.NEVER).release()
    return d / snapshot_name(index, term)


def state_version_6(d: Path) -> Path:
    return _snapshot(d, 3, 1, msgpack.packb([6, {}, {}, {}]))


def state_not_msgpack(d: Path) -> Path:
    return _snapshot(d, 3, 1, b"\xc1\xc1\xc1")


def config_entry_garbage(d: Path) -> Path:
    return _append_records(d, [rec.ENTRIES, 4, [[1, CONFIG, b"\xc1\x00"]]])


def hard_state_term_2_64(d: Path) -> Path:
    return _append_records(d, [rec.HARD_STATE, 2**64 - 1, 0, 3])


def hard_state_beyond_max_term(d: Path) -> Path:
    return _append_records(d, [rec.HARD_STATE, MAX_TERM + 1, 0, 3])


def entry_term_2_64(d: Path) -> Path:
    return _append_records(d, [rec.ENTRIES, 4, [[2**64 - 1, NORMAL, b"x"]]])


def snapshot_term_2_63(d: Path) -> Path:
    return _snapshot(d, 3, 2**63, _state())


CRAFTED: dict[str, Callable[[Path], Path]] = {f.__name__: f for f in (
    state_version_6, state_not_msgpack, config_entry_garbage, hard_state_term_2_64,
    hard_state_beyond_max_term, entry_term_2_64, snapshot_term_2_63)}


def _serve(d: Path, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    client, peer = free_ports(2)
    cmd = [sys.executable, "-m", "raftkv", "serve", "--id", "1", "--fsync", "never",
           "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
           "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", str(d)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # (run kills it)
        pytest.fail(f"the node started on a crafted directory: {exc.stderr!r:.800}")


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_file_is_refused_at_start_with_one_line_naming_it(tmp_path: Path,
                                                                    case: str) -> None:
    d = tmp_path / "data"
    _base(d)
    path = CRAFTED[case](d)
    done = _serve(d)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-1500:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("raftkv serve: refusing to start: "), done.stderr[-1500:]
    assert str(path) in lines[-1], lines[-1]
    assert sum("raftkv serve:" in line for line in lines) == 1, done.stderr[-1500:]


CHILD = """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1024 * 1024 * 1024, resource.RLIM_INFINITY))
    from raftkv.restore import config_of
    from raftkv.storage import open_storage
    from raftkv.storage.errors import DiskStorageError
    try:
        open_storage(sys.argv[1], "raftkv", 1, config_of({1: "127.0.0.1:1"}),
                     fsync="never").close()
    except DiskStorageError as exc:
        print("refused:", exc)
    else:
        print("opened")
"""


def test_a_snapshot_claiming_gigabytes_of_metadata_is_refused_in_bounded_memory(
        tmp_path: Path) -> None:
    d = tmp_path / "data"
    _base(d)
    meta_len = 0xFFFFFFF0
    with open(d / snapshot_name(0, 0), "r+b") as f:  # sparse: no disk used
        f.truncate(0)
        f.write(HEADER.pack(MAGIC, VERSION, meta_len, 0))
        f.truncate(HEADER.size + meta_len + CRC.size)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(d)],
                          capture_output=True, text=True, timeout=60)
    assert "refused:" in done.stdout, done.stderr[-1500:]
