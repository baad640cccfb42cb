"""attack25: a node started with SIGCHLD ignored never takes a snapshot (fork is the default).

An ignored signal stays ignored across exec, and some supervisors, init shims and daemons
start their children so. With SIGCHLD ignored the kernel reaps every child itself:
``os.waitpid`` in ``SnapshotChild._pieces`` gets ECHILD, the status stays -1, and every
snapshot the child wrote whole ends in ChildFailed ("exited with status -0x1"). RAFT
SNAPSHOT answers an error, automatic snapshots fail and back off forever, and the log
grows without bound. ``raftkv serve`` resets no signal disposition but its own handlers;
the worker thread (--snapshot-thread) is not affected.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from chaos.cluster import free_ports

pytestmark = pytest.mark.timeout(60)

LAUNCH = """
import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # as a supervisor that ignores it would
os.execv(sys.executable, [sys.executable, "-m", "raftkv", *sys.argv[1:]])
"""


def test_raft_snapshot_works_when_the_node_was_started_with_sigchld_ignored(
        tmp_path: Path) -> None:
    client, peer = free_ports(2)
    node = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "serve", "--id", "1",
         "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
         "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", str(tmp_path / "node"),
         "--fsync", "never", "--snapshot-entries", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        r = redis.Redis(port=client, socket_timeout=10, protocol=2)
        deadline = time.monotonic() + 30
        while True:  # polling another process until it serves: no event to wait on
            try:
                if r.set("k", "v"):
                    break
            except (redis.ConnectionError, redis.ResponseError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        try:
            got: object = r.execute_command("RAFT", "SNAPSHOT")
        except redis.ResponseError as exc:
            got = f"error: {exc}"
        assert isinstance(got, int), f"RAFT SNAPSHOT: {got!r}"
    finally:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=15)
