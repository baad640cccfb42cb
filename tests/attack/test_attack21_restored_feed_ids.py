"""A watcher resuming on a restored cluster silently misses its changes (attack21).

Change ids are log indexes. ``raftkv restore`` makes a new cluster whose log goes on from
the backup's index B, so it issues again the ids B+1, B+2, ... that the old cluster had
already issued for other changes after the backup was taken. A watcher of the old cluster
(``kv.watch``, ``raftkv-cli watch --from``, or a program keeping its last ``XREAD`` id)
that resumes on the restored cluster from its last id L > B gets nothing back (an id from
the future: ``XREAD`` answers null, ``BLOCK`` waits), and every change the restored
cluster makes up to index L is never delivered: no error, no gap it could see.

Live: one node, 20 SETs, ``raftkv backup`` (index B), 30 more SETs (last id L = B+30),
restore into a new cluster, one ``SET fresh 1`` there (an id a few past B): ``XREAD STREAMS
__raftkv:changes L`` answers null, and stays null until the restored cluster passes L.

etcd had the same problem with revisions and fixed it in ``etcdutl snapshot restore
--bump-revision N --mark-compacted``: the restored store's revisions jump past any the old
cluster could have issued, and a watch resuming from an older revision gets
``ErrCompacted`` (it must re-read and re-watch) instead of silently skipping. Right here:
a resume from an id the old cluster issued after the backup either answers the "change
feed compacted" error or delivers the restored cluster's changes; never a silent null.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call
from wire.reply import OK, ErrorReply

pytestmark = pytest.mark.timeout(120)

FEED = "__raftkv:changes"


def _raftkv(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "raftkv", *args], check=True,
                   capture_output=True, timeout=60)


def _last_id(addr: str) -> str:
    reply = call(addr, "XREVRANGE", FEED, "+", "-", "COUNT", "1", timeout=10.0)
    assert isinstance(reply, list) and reply, reply
    return reply[0][0].decode()


@pytest.fixture
def old_and_new(tmp_path: Path) -> Iterator[tuple[LocalCluster, LocalCluster]]:
    old = LocalCluster(tmp_path / "old", nodes=1, fsync="never")
    new = LocalCluster(tmp_path / "new", nodes=1, fsync="never")
    try:
        yield old, new
    finally:
        old.close()
        new.close()


def test_resuming_on_a_restored_cluster_is_never_a_silent_skip(
        tmp_path: Path, old_and_new: tuple[LocalCluster, LocalCluster]) -> None:
    old, new = old_and_new
    old.start()
    old.wait_for_leader()
    addr = old.nodes[1].client_addr
    for n in range(20):
        assert call(addr, "SET", f"k{n}", "before", timeout=10.0) == OK
    backup = tmp_path / "cluster.bak"
    _raftkv("backup", "--endpoints", addr, str(backup))
    for n in range(30):
        assert call(addr, "SET", f"k{n}", "after", timeout=10.0) == OK
    watcher_id = _last_id(addr)  # where a watcher of the old cluster stands
    old.stop(1)

    node = new.nodes[1]
    _raftkv("restore", str(backup), "--data-dir", str(node.data_dir), "--id", "1",
            "--cluster", f"1={node.peer_addr}", "--cluster-id", new.cluster_id)
    new.start()
    new.wait_for_leader()
    assert call(node.client_addr, "SET", "fresh", "1", timeout=10.0) == OK
    assert _last_id(node.client_addr) != watcher_id

    reply = call(node.client_addr, "XREAD", "COUNT", "100", "STREAMS", FEED, watcher_id,
                 timeout=10.0)

    if isinstance(reply, ErrorReply):
        assert "compacted" in reply.text
    else:
        assert reply is not None, (f"XREAD from {watcher_id} on the restored cluster: "
                                   "null, the change to 'fresh' is never delivered")
        assert b"fresh" in repr(reply).encode()
