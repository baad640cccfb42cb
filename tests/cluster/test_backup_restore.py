"""Backup, restore and disaster recovery with real processes and the real CLI.

- ``raftkv backup`` of a 3-node cluster under a steady write load, from a follower, then
  ``raftkv restore`` of that file into a fresh 3-node cluster (new cluster id): the new
  cluster holds exactly the backup's key count, including every write acknowledged before
  the backup started, and nothing that was never written.
- Two of three nodes lost for good: ``raftkv recover --force-new-cluster`` on the survivor
  gives a one-node cluster with every key committed before the loss, which takes writes and
  grows again with a node that joins.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster
from raftkv.backup_file import verify_backup
from raftkv.probe import call
from wire.reply import ErrorReply

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def raftkv(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftkv", *args], capture_output=True,
                          text=True, timeout=timeout)


def client(c: LocalCluster, node_id: int) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, socket_timeout=10)


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)  # polling other processes: there is no event to wait on


class Writer(threading.Thread):
    """SETs w:0, w:1, ... one at a time until stopped; records what was acknowledged."""

    def __init__(self, r: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.r = r
        self.acked: list[int] = []
        self.attempted = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.attempted = n + 1
            try:
                if self.r.set(f"w:{n}", str(n)):
                    self.acked.append(n)
            except redis.RedisError:
                pass
            n += 1


def test_backup_under_write_load_restores_into_a_new_cluster(tmp_path: Path) -> None:
    backup_file = tmp_path / "cluster.bak"
    with LocalCluster(tmp_path / "old") as old:
        leader = old.wait_for_leader()
        follower = next(i for i in old.nodes if i != leader)
        writer = Writer(client(old, leader))
        writer.start()
        try:
            wait_for(lambda: len(writer.acked) >= 30)
            acked_before = set(writer.acked)
            result = raftkv("backup", "--endpoints", old.nodes[follower].client_addr,
                            str(backup_file))
            wait_for(lambda: len(writer.acked) >= len(acked_before) + 10)  # load went on
        finally:
            writer.stop.set()
            writer.join(timeout=20)
    assert result.returncode == 0, result.stderr
    m = re.search(r"at index (\d+) \(term \d+\): (\d+) keys", result.stdout)
    assert m, result.stdout
    keys = int(m.group(2))
    header = verify_backup(str(backup_file))
    assert (header.index, header.keys) == (int(m.group(1)), keys)
    assert len(acked_before) <= keys < writer.attempted
    verified = raftkv("backup", "verify", str(backup_file))
    assert verified.returncode == 0 and "OK" in verified.stdout

    new = LocalCluster(tmp_path / "new", extra_args=["--cluster-id", "restored"])
    for i, node in new.nodes.items():
        out = raftkv("restore", str(backup_file), "--data-dir", str(node.data_dir),
                     "--id", str(i), "--cluster", new.cluster_arg_for(i),
                     "--cluster-id", "restored")
        assert out.returncode == 0, out.stderr
    with new:
        leader = new.wait_for_leader()
        r = client(new, leader)
        assert r.dbsize() == keys
        values = r.mget([f"w:{n}" for n in sorted(acked_before)])
        assert values == [str(n).encode() for n in sorted(acked_before)]
        # Keys are a prefix of what the writer sent, in order: w:0 .. w:keys-1.
        assert r.exists(f"w:{keys - 1}") == 1 and r.exists(f"w:{keys}") == 0
        assert r.set("after-restore", "1") is True
        for i in new.nodes:
            wait_for(lambda i=i: client(new, i).get("after-restore") == b"1")


def test_restore_refuses_the_old_cluster_id_and_a_used_directory(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "old", nodes=1) as old:
        old.wait_for_leader()
        client(old, 1).set("a", "1")
        assert raftkv("backup", "--endpoints", old.nodes[1].client_addr,
                      str(tmp_path / "b.bak")).returncode == 0
        # Sessions are bounded (2 per node) and every argument is checked.
        addr = old.nodes[1].client_addr
        first, second = (dict(zip(*[iter(call(addr, "RAFT", "BACKUP"))] * 2, strict=True))
                         for _ in range(2))
        third = call(addr, "RAFT", "BACKUP")
        assert isinstance(third, ErrorReply) and third.text.startswith("TRYAGAIN")
        token = first[b"id"]
        assert len(call(addr, "RAFT", "BACKUP", "CHUNK", token, "0")) == first[b"bytes"]
        assert isinstance(call(addr, "RAFT", "BACKUP", "CHUNK", token, "99999999"), ErrorReply)
        assert isinstance(call(addr, "RAFT", "BACKUP", "CHUNK", token, "-1"), ErrorReply)
        assert isinstance(call(addr, "RAFT", "BACKUP", "CHUNK", "nope", "0"), ErrorReply)
        assert call(addr, "RAFT", "BACKUP", "END", token) == 1
        assert call(addr, "RAFT", "BACKUP", "END", token) == 0
        assert not isinstance(call(addr, "RAFT", "BACKUP"), ErrorReply)  # a slot again
        assert second[b"index"] >= 2 and second[b"keys"] == 1
    same = raftkv("restore", str(tmp_path / "b.bak"), "--data-dir", str(tmp_path / "x"),
                  "--id", "1", "--cluster", "1=127.0.0.1:1", "--cluster-id", old.cluster_id)
    assert same.returncode == 1 and "new id" in same.stderr
    used = raftkv("restore", str(tmp_path / "b.bak"), "--data-dir", str(old.nodes[1].data_dir),
                  "--id", "1", "--cluster", "1=127.0.0.1:1", "--cluster-id", "other")
    assert used.returncode == 1 and "not empty" in used.stderr
    data = bytearray((tmp_path / "b.bak").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.bak").write_bytes(bytes(data))
    bad = raftkv("backup", "verify", str(tmp_path / "bad.bak"))
    assert bad.returncode == 1 and "checksum mismatch" in bad.stderr


def test_recover_a_survivor_into_a_one_node_cluster_that_grows(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as c:
        leader = c.wait_for_leader()
        r = client(c, leader)
        with r.pipeline(transaction=False) as pipe:
            for n in range(300):
                pipe.set(f"k:{n}", str(n))
            assert all(pipe.execute())
        commit = int(c.info(leader)["commit_index"])  # type: ignore[index]
        feed = r.xrange("__raftkv:changes", "-", "+", count=1000)  # ids are log indexes
        assert len(feed) == 300
        survivor = next(i for i in c.nodes if i != leader)
        wait_for(lambda: int((c.info(survivor) or {}).get("last_applied", 0)) >= commit)
        for i in c.nodes:
            if i != survivor:
                c.kill(i)  # lost for good
        c.kill(survivor)  # and the survivor crashed too (recovery works from its disk)
        refused = raftkv("recover", "--data-dir", str(c.nodes[survivor].data_dir),
                         "--id", str(survivor))
        assert refused.returncode == 2 and "--force-new-cluster" in refused.stderr
        out = raftkv("recover", "--data-dir", str(c.nodes[survivor].data_dir),
                     "--id", str(survivor), "--force-new-cluster")
        assert out.returncode == 0, out.stderr
        assert "recovered 300 keys" in out.stdout and "WARNING" in out.stderr
        assert list(tmp_path.glob(f"node-{survivor}.before-recover-*"))
        for i in list(c.nodes):
            if i != survivor:
                c.forget(i)
        c.start(survivor)
        assert c.wait_for_leader() == survivor
        s = client(c, survivor)
        assert s.mget([f"k:{n}" for n in range(300)]) == [str(n).encode() for n in range(300)]
        # The one-node cluster starts 2^40 past the survivor's log, its feed compacted
        # there (a lost node may have issued ids past it): a resume gets "compacted".
        assert s.xrange("__raftkv:changes", "-", "+", count=1000) == []
        assert s.set("after", "1") is True
        with pytest.raises(redis.ResponseError, match="compacted"):
            s.xread({"__raftkv:changes": feed[-1][0]}, count=10)
        members = (c.info(survivor) or {}).get("members", "")
        assert re.fullmatch(rf"{survivor}=[^,]+\(voter\)", members), members
        new = c.add_node(9, join=[survivor])
        wait_for(lambda: client(c, 9).get("after") == b"1", timeout=30)
        assert new.alive
        wait_for(lambda: "9=" in (c.info(survivor) or {}).get("members", ""))
