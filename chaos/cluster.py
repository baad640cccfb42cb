"""Real ``raftkv serve`` processes on loopback, for the tests and the chaos suite.

Blocking by design (subprocess + the tiny probe client): the tests that use it are plain
functions driving real clients (redis-cli, redis-py) and the chaos suite runs it from a
worker thread. Every process is started in its own session and killed on ``close``
whatever happened, so a failed test leaves no stray node behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from raftkv.probe import info_raft


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that were free a moment ago (bound to port 0, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class NodeProcess:
    def __init__(self, node_id: int, client_addr: str, peer_addr: str, data_dir: Path,
                 log_path: Path) -> None:
        self.id = node_id
        self.client_addr = client_addr
        self.peer_addr = peer_addr
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """``nodes`` real processes on ``host``; ports picked free unless given."""

    def __init__(self, workdir: Path, nodes: int = 3, host: str = "127.0.0.1",
                 extra_args: list[str] | None = None, fsync: str = "always") -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.extra_args = extra_args or []
        self.fsync = fsync
        ports = free_ports(2 * nodes, host)
        self.nodes = {
            i: NodeProcess(i, f"{host}:{ports[2 * (i - 1)]}", f"{host}:{ports[2 * i - 1]}",
                           self.workdir / f"node-{i}", self.workdir / f"node-{i}.log")
            for i in range(1, nodes + 1)
        }
        self.cluster_arg = ",".join(f"{n.id}={n.peer_addr}" for n in self.nodes.values())

    # -- processes ------------------------------------------------------------------------

    def command(self, node: NodeProcess) -> list[str]:
        return [sys.executable, "-m", "raftkv", "serve", "--id", str(node.id),
                "--client-addr", node.client_addr, "--peer-addr", node.peer_addr,
                "--cluster", self.cluster_arg, "--data-dir", str(node.data_dir),
                "--fsync", self.fsync, "-v", *self.extra_args]

    def start(self, node_id: int | None = None) -> None:
        targets = [self.nodes[node_id]] if node_id else list(self.nodes.values())
        for node in targets:
            if node.alive:
                continue
            log = open(node.log_path, "ab")  # noqa: SIM115 - handed to the child process
            node.proc = subprocess.Popen(self.command(node), stdout=log, stderr=log,
                                         start_new_session=True)
            log.close()

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[node_id]
        if node.alive:
            assert node.proc is not None
            node.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                node.proc.wait(timeout=15)

    def stop(self, node_id: int) -> int:
        """Graceful stop (SIGTERM); returns the exit status."""
        node = self.nodes[node_id]
        if not node.alive:
            return node.proc.returncode if node.proc else 0
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        return node.proc.wait(timeout=15)

    def wipe(self, node_id: int) -> None:
        shutil.rmtree(self.nodes[node_id].data_dir, ignore_errors=True)

    def close(self) -> None:
        for node in self.nodes.values():
            if node.alive:
                assert node.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGCONT)  # a paused node must die too
                node.proc.kill()
                node.proc.wait(timeout=15)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- observation ----------------------------------------------------------------------

    def info(self, node_id: int, timeout: float = 0.5) -> dict[str, str] | None:
        try:
            return info_raft(self.nodes[node_id].client_addr, timeout)
        except (OSError, ConnectionError):
            return None

    def wait_for_leader(self, timeout: float = 15.0, among: list[int] | None = None,
                        exclude: int = 0) -> int:
        """Id of a leader that the live nodes in ``among`` agree on (same term)."""
        ids = among or [i for i, n in self.nodes.items() if n.alive]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = {i: self.info(i) for i in ids if self.nodes[i].alive}
            leaders = {(int(v["leader_id"]), int(v["term"])) for v in infos.values()
                       if v and v.get("role") == "leader"}
            followers_agree = all(v and int(v["leader_id"]) in {lid for lid, _ in leaders}
                                  for v in infos.values())
            if len(leaders) == 1 and followers_agree:
                (leader, _), = leaders
                if leader != exclude:
                    return leader
            time.sleep(0.05)  # polling other processes: there is no event to wait on
        raise TimeoutError(f"no agreed leader among {ids} after {timeout}s: {self.logs_tail()}")

    def logs_tail(self, lines: int = 15) -> str:
        out = []
        for node in self.nodes.values():
            if node.log_path.exists():
                tail = node.log_path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- node {node.id} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def client_addr(self, node_id: int) -> tuple[str, int]:
        host, _, port = self.nodes[node_id].client_addr.rpartition(":")
        return host, int(port)
