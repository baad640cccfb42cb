"""A restored cluster inherits the old cluster's "published" voters, so a member whose
restore was forgotten is told it lost its data and must leave under a new id (attack21).

``raftkv restore`` makes a new cluster from a backup, but the backup's state carries the
set of voters the *old* cluster's leader recorded as having served (``publish_member``;
``INFO raft`` ``published:1,2,3``). Live: old cluster {1, 2, 3}, backup, restore into
nodes 1 and 2 of a new cluster {1, 2, 3} (same ids, the usual case), node 3's restore
forgotten: node 3, started with the same ``--cluster`` on an empty directory, asks its
founders and exits with ``node 3 is already a voter of this cluster (node 1 has it as
published: it served), but its data directory is empty ... Remove it (raftkv member
remove 3 ...) and start it with a new --id and --join``. Node 3 never served in the new
cluster; the advice has the operator shrink the new cluster and re-add a node, where the
mistake is one missing ``raftkv restore``.

Right: a restored state starts with no published members of its own (etcdutl snapshot
restore drops the old membership data entirely), so node 3 either starts as the empty
founder it is and receives the snapshot, or, if it must be refused, is told to run
``raftkv restore`` for it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from backup_helpers import write_backup
from click.testing import CliRunner

from chaos.cluster import LocalCluster
from raftkv.cli import main
from raftkv.kv import KVStateMachine
from raftkv.kv.codec import encode_entry
from raftkv.probe import call

pytestmark = pytest.mark.timeout(120)


def _old_cluster_backup(path: Path) -> str:
    """The state of an old cluster {1, 2, 3} whose voters all served, and one key."""
    kv = KVStateMachine()
    for index, node_id in enumerate((1, 2, 3), start=2):
        kv.apply(encode_entry([b"publish_member", str(node_id).encode()], 1), index=index)
    kv.apply(encode_entry([b"SET", b"a", b"1"], 1), index=5)
    return write_backup(path, kv.snapshot(), index=5, term=1)


def test_a_member_whose_restore_was_forgotten_is_not_told_it_lost_its_data(
        tmp_path: Path) -> None:
    backup = _old_cluster_backup(tmp_path / "old.bak")
    c = LocalCluster(tmp_path / "new", fsync="never")
    try:
        cluster = ",".join(f"{n.id}={n.peer_addr}" for n in c.nodes.values())
        for i in (1, 2):  # node 3's restore forgotten
            made = CliRunner().invoke(main, [
                "restore", backup, "--data-dir", str(c.nodes[i].data_dir), "--id", str(i),
                "--cluster", cluster, "--cluster-id", c.cluster_id])
            assert made.exit_code == 0, made.output
        c.start()
        node3 = c.nodes[3]
        deadline = time.monotonic() + 60
        while node3.alive:
            try:
                if call(node3.client_addr, "GET", "a", timeout=2.0) == b"1":
                    return  # it started empty and received the restored state
            except (OSError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "node 3 neither served nor exited"
            time.sleep(0.1)  # another process's progress: nothing to wait on
        # Its last line is why it exited (the test's own path holds "restore": not that).
        said = node3.log_path.read_text().strip().splitlines()[-1]
        assert "raftkv restore" in said, said
    finally:
        c.close()
