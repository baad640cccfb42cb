"""``raftkv restore`` and ``raftkv backup verify`` on crafted files (attack2 branch, round
2). Each test fails today.

A backup's trailing SHA-256 proves the file is intact, not that its header is sane: anyone
can write a file whose digests match. ``restore`` checks the digests but neither decodes
the payload (``verify`` does) nor bounds the header's numbers, and says "restored N keys"
(N from the header) whatever happened. Live, from such files:

* a payload that does not decode: restore succeeds, then ``raftkv serve`` exits at start
  with ``KVDecodeError`` on every member restored from it (a crash loop under systemd);
* index 2**64-1: restore succeeds, the node exits at start (msgpack ``OverflowError``);
* term 2**63: restore succeeds; a one-node cluster runs at term 2**63+1, and in a larger
  one every RequestVote is beyond ``MAX_TERM`` (2**62-1), which peers refuse as malformed;
* index 0 with a key in it: restore prints "restored 1 keys" and writes no snapshot at all,
  so the new cluster starts empty;
* a header that says 999 keys over a 1-key payload: "restored 999 keys".

And ``read_backup`` reads the whole file, then copies it twice (body, payload): ``verify``
of ``/dev/zero`` grows until the OOM killer, and a real backup needs three times its
size in memory to verify or restore.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from backup_helpers import write_backup

from raftkv.backup_file import MAGIC, BackupError
from raftkv.kv import KVStateMachine
from raftkv.kv.codec import encode_entry
from raftkv.restore import RestoreError, restore
from wire.raft import MAX_INDEX, MAX_TERM


def _one_key_state() -> bytes:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"a", b"1"], 1))
    return kv.snapshot()




CRAFTED = {
    "payload-does-not-decode": (b"\x93\x01\x02\x03", {}),
    "index-beyond-max": (None, {"index": MAX_INDEX + 1}),
    "term-beyond-max": (None, {"term": MAX_TERM + 1}),
    "index-0-with-keys": (None, {"index": 0}),
    "header-keys-disagree": (None, {"keys": 999}),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_restore_refuses_a_file_that_cannot_make_a_working_node(tmp_path: Path,
                                                                 case: str) -> None:
    """Restore must refuse (BackupError/RestoreError) a file ``backup verify`` would refuse
    or that makes a data directory no node can run, instead of writing it and reporting
    success."""
    payload, fields = CRAFTED[case]
    path = write_backup(tmp_path / "b.bk", _one_key_state() if payload is None else payload,
                  **fields)
    data_dir = tmp_path / "data"
    with pytest.raises((BackupError, RestoreError)):
        restore(path, str(data_dir), 1, {1: "127.0.0.1:1"}, "new")


VERIFY_CHILD = """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1024 * 1024 * 1024, resource.RLIM_INFINITY))
    from raftkv.backup_file import BackupError, verify_backup
    try:
        verify_backup(sys.argv[1])
    except BackupError as exc:
        print("refused:", exc)
"""


def test_verify_streams_the_file_instead_of_holding_it_three_times(tmp_path: Path) -> None:
    """A 700 MB file that starts like a backup (sparse: no disk used) is refused for its
    checksum by a process allowed 1 GB of address space; today reading it whole and
    copying it (``raw[:-32]``) raises MemoryError."""
    path = tmp_path / "big.bk"
    with open(path, "wb") as f:
        f.write(MAGIC + (1024).to_bytes(4, "big"))
        f.truncate(700 * 1024 * 1024)
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(VERIFY_CHILD), str(path)],
                              capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(path)
    assert "refused:" in done.stdout and "checksum" in done.stdout, done.stderr[-1500:]
