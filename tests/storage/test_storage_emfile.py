"""Issue 12, reproduction 5, for real: idle clients take every descriptor of a node, and
RAFT SNAPSHOT must not stop it (it answered with StorageFailure (EMFILE) and exited)."""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis

from chaos.cluster import free_ports

pytestmark = pytest.mark.slow

NOFILE = 96


def limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def test_raft_snapshot_with_every_descriptor_taken_by_clients(tmp_path):
    client_port, peer = free_ports(2)
    cmd = [sys.executable, "-m", "raftkv", "serve", "--id", "1",
           "--client-addr", f"127.0.0.1:{client_port}", "--peer-addr", f"127.0.0.1:{peer}",
           "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", str(tmp_path / "data"),
           "--snapshot-entries", "0"]
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log,
                            preexec_fn=limit_descriptors)
    log.close()
    idle: list[socket.socket] = []
    try:
        admin = redis.Redis(port=client_port, socket_timeout=10, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            with contextlib.suppress(redis.RedisError):
                if admin.set("a", "1"):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for i in range(50):
            admin.set(f"k{i}", "v")
        # The server imports its RAFT command module on first use, and an import needs a
        # descriptor: use it once now (lazy imports under EMFILE are the client port's
        # business, not storage's).
        admin.execute_command("RAFT", "STATUS")
        # Idle clients until the node can accept no more: a PING on a new connection
        # goes unanswered once accept fails with EMFILE (the kernel still queues it).
        while True:
            s = socket.create_connection(("127.0.0.1", client_port), timeout=1)
            idle.append(s)
            s.sendall(b"PING\r\n")
            try:
                if s.recv(16) != b"+PONG\r\n":
                    break
            except TimeoutError:
                break
            assert len(idle) < NOFILE, "the node accepted more clients than it has descriptors"
        with pytest.raises(redis.ResponseError, match=r"snapshot not written.*Too many open"):
            admin.execute_command("RAFT", "SNAPSHOT")
        assert admin.set("after", "1")  # still serving, the log still takes writes
        assert proc.poll() is None
        for s in idle:
            s.close()
        idle.clear()
        deadline = time.monotonic() + 10
        while True:  # descriptors come back as the node sees the clients close
            try:
                index = int(admin.execute_command("RAFT", "SNAPSHOT"))
                break
            except redis.ResponseError as e:
                assert "Too many open files" in str(e)
                assert time.monotonic() < deadline, e
                time.sleep(0.1)
        assert index >= 52
        assert admin.get("k49") == b"v" and proc.poll() is None
    finally:
        for s in idle:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
