"""A full disk, for real: a node's data directory on a small tmpfs that its own writes fill.

The node must stop with ONE clear line (no traceback storm), lose nothing it
acknowledged, and once the operator frees space restart and serve without crash-looping,
although the automatic snapshot it is due still lacks the space it needs (it is retried
later and succeeds once the disk grows).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import free_ports

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


class Node:
    """One single-node ``raftkv serve``, its stderr kept in a file."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        client, peer = free_ports(2)
        self.port = client
        self.log = log
        self.cmd = [sys.executable, "-m", "raftkv", "serve", "--id", "1",
                    "--client-addr", f"127.0.0.1:{client}", "--peer-addr", f"127.0.0.1:{peer}",
                    "--cluster", f"1=127.0.0.1:{peer}", "--data-dir", str(data_dir),
                    "--snapshot-entries", "100"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> redis.Redis:
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=err)
        client = redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, self.stderr()
            with contextlib.suppress(redis.RedisError):
                if client.set("probe", "1"):  # served: elected and writing
                    return client
            assert time.monotonic() < deadline, "node did not start serving"
            time.sleep(0.05)

    def stderr(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_full_disk_stops_the_node_with_one_line_and_it_restarts_without_a_crash_loop(
    tmp_path,
):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        ballast = disk / "ballast"
        ballast.write_bytes(b"\1" * (640 * 1024))  # the operator's to free later
        node = Node(disk / "node-1", tmp_path / "node.log")
        try:
            client = node.start()
            acked: dict[str, bytes] = {}
            value = os.urandom(1000).hex().encode()  # 2 KB per write
            deadline = time.monotonic() + 60
            for i in range(100_000):
                assert time.monotonic() < deadline, "the disk never filled"
                key = f"k{i}"
                try:
                    client.set(key, value + key.encode())
                except redis.RedisError:
                    break
                acked[key] = value + key.encode()
            assert node.wait(15) == 1
            err = node.stderr()
            assert "Traceback" not in err, err
            lines = err.strip().splitlines()
            stops = [line for line in lines if line.startswith("raftkv serve:")]
            assert stops == [lines[-1]], err
            assert stops[0].startswith("raftkv serve: stopping: writing the WAL in ")
            assert "(disk full): [Errno 28] No space left on device" in stops[0]
            assert len(acked) > 200

            # The operator frees some space (not enough for a snapshot) and restarts it.
            ballast.unlink()
            client = node.start()
            assert client.mget(list(acked)) == list(acked.values())  # nothing acked lost
            for i in range(30):
                assert client.set(f"after{i}", b"v")
            with pytest.raises(redis.ResponseError, match="snapshot not written: not enough"):
                client.execute_command("RAFT", "SNAPSHOT")
            assert node.proc is not None and node.proc.poll() is None, node.stderr()
            assert "snapshot not written" in node.stderr()

            # More space: the snapshot now succeeds, the node never stopped.
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
            assert int(client.execute_command("RAFT", "SNAPSHOT")) >= len(acked)
            assert client.get("after29") == b"v"
            assert node.proc.poll() is None
        finally:
            node.stop()
