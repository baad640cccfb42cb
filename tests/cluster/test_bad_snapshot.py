"""A follower sent a snapshot whose data does not decode refuses it and stays up (real
processes). Before the snapshot gate (raftkv/node/snapshot_gate.py) the consensus core
took the last chunk as installed, the node failed to decode the file and exited, and it
exited again at every restart while the leader kept sending the same snapshot."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_snapshots import (
    EVERY,
    client,
    follower_of,
    log_text,
    raft_info,
    wait_until,
    write_keys,
)

from chaos.cluster import ONE_ENTRY_PER_WRITE, LocalCluster
from raftkv.storage.snapshot_file import HEADER, parse_snapshot_name

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, extra_args=["--snapshot-entries", str(EVERY),
                                            *ONE_ENTRY_PER_WRITE]) as c:
        c.wait_for_leader()
        yield c


def corrupt_snapshot_data(data_dir: Path, index: int) -> None:
    """Make the first byte of snapshot ``index``'s data one msgpack never uses (0xc1),
    in place: the leader reads its snapshot through a descriptor it keeps open."""
    names = [n for n in os.listdir(data_dir) if (parse_snapshot_name(n) or (0,))[0] == index]
    assert len(names) == 1, os.listdir(data_dir)
    path = data_dir / names[0]
    with open(path, "r+b") as f:
        _magic, _version, meta_len, _data_len = HEADER.unpack(f.read(HEADER.size))
        f.seek(HEADER.size + meta_len)
        f.write(b"\xc1")


def test_a_follower_refuses_a_snapshot_that_does_not_decode_and_stays_up(
        cluster: LocalCluster) -> None:
    c = cluster
    leader = c.wait_for_leader()
    lagging = follower_of(c, leader)
    write_keys(c, leader, range(100))
    wait_until(lambda: int(raft_info(c, lagging)["last_applied"]) >= 100, what="apply")
    c.stop(lagging)
    # 1 KiB values: a snapshot of several 512 KiB chunks, so the node reads back what it
    # wrote of the earlier chunks to check the whole.
    write_keys(c, leader, range(100, 1000), tag="x" * 1024)
    index = client(c, leader).execute_command("RAFT", "SNAPSHOT")  # the last, once written
    corrupt_snapshot_data(c.nodes[leader].data_dir, index)
    c.start(lagging)
    wait_until(lambda: "snapshot refused" in log_text(c, lagging), what="the refusal")
    assert "snapshot installed" not in log_text(c, lagging)
    # It stays up and as it was (its own log applied, nothing replaced), and refuses
    # again when the leader, after the receive times out, sends the snapshot over.
    info = raft_info(c, lagging)
    assert 100 <= int(info["last_applied"]) < 1000 - EVERY, info
    wait_until(lambda: int(raft_info(c, lagging)["last_applied"]) < 1000 - EVERY
               and log_text(c, lagging).count("snapshot receiving") >= 3, timeout=40,
               what="the resent snapshot refused too (the leader sends it a third time)")
    assert log_text(c, lagging).count("snapshot refused") == 1  # throttled: once a minute
    assert "snapshot installed" not in log_text(c, lagging)
    assert "Traceback" not in log_text(c, lagging)
    assert not c.crashed(), c.logs_tail()
