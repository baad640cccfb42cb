"""The image and the compose cluster for real, under podman (issue 20).

Sets the engine up with .ci/container-engine (packages, engine config, base image, image;
each step cached), starts docker-compose.yml under podman-compose as a project of its own
on free loopback ports, and checks what a user relies on: a leader is elected, nodes
advertise service names, the HEALTHCHECK passes, SIGTERM stops a node cleanly, data
survives down/up on the named volumes, and the original's partition test (the leader cut off
and reconnected at a new address) passes. Where the engine cannot be set up or start a
container, the test fails with the setup script's own words: there is no skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import free_ports
from raftkv.probe import call, info_raft
from wire.reply import SimpleString

ROOT = Path(__file__).resolve().parents[2]
# The first run on a machine makes the base image (~2 min) before the first test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def sh(argv: list[str], env: dict[str, str] | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=timeout, check=False)


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, ConnectionError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.25)


class Compose:
    """One podman-compose project of docker-compose.yml on free loopback ports."""

    def __init__(self) -> None:
        self.project = f"rkvtest{os.getpid()}"
        ports = free_ports(3)
        self.addrs = [f"127.0.0.1:{p}" for p in ports]
        self.env = {**os.environ, "PYTHON": sys.executable, **{f"RAFTKV_HOST_PORT{i}": str(p)
                                     for i, p in enumerate(ports, start=1)}}

    def __call__(self, *args: str, timeout: float = 120) -> str:
        out = sh(["podman-compose", "-p", self.project, *args], self.env, timeout)
        assert out.returncode == 0, f"podman-compose {' '.join(args)}:\n{out.stderr[-3000:]}"
        return out.stdout

    def container(self, node: int) -> str:
        return f"{self.project}_node{node}_1"

    def leader(self) -> int | None:
        ids = {info_raft(a, timeout=1.0).get("leader_id") for a in self.addrs}
        return int(ids.pop()) if len(ids) == 1 and None not in ids and "0" not in ids else None


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    setup = sh([str(ROOT / ".ci/container-engine")], timeout=900)
    assert setup.returncode == 0, ("the container engine could not be set up "
                                   f"(.ci/container-engine):\n{setup.stderr[-4000:]}")
    c = Compose()
    try:
        c("up", "-d")
        yield c
    finally:
        sh(["podman-compose", "-p", c.project, "down", "-v"], c.env, 120)
        sh(["podman", "network", "rm", "-f", f"{c.project}_default"], timeout=60)


def test_the_compose_cluster_elects_advertises_service_names_and_keeps_its_data(
        compose: Compose) -> None:
    leader = wait_for(compose.leader, 60, "the three containers agree on a leader")
    info = info_raft(compose.addrs[0], timeout=10)
    # Inside the network a client is sent to the leader's service name, not to 127.0.0.1.
    assert info["leader_client_addr"] == f"node{leader}:7001"
    assert info["client_addr"] == "node1:7001"
    assert call(compose.addrs[0], "SET", "kept", "across-down-up", timeout=10) == SimpleString("OK")
    assert call(compose.addrs[2], "GET", "kept", timeout=10) == b"across-down-up"
    # The HEALTHCHECK is real: it runs in the container and passes on a node with a leader.
    health = sh(["podman", "healthcheck", "run", compose.container(2)])
    assert health.returncode == 0, health.stdout + health.stderr
    # SIGTERM (podman stop) ends each node cleanly: exit code 0, not the SIGKILL of the
    # grace period running out.
    compose("stop")
    for n in (1, 2, 3):
        code = sh(["podman", "inspect", "--format", "{{.State.ExitCode}}",
                   compose.container(n)]).stdout.strip()
        assert code == "0", f"node{n} exited {code} on SIGTERM"
    compose("down")  # the named volumes stay
    compose("up", "-d")
    wait_for(compose.leader, 60, "a leader after down/up")
    assert wait_for(lambda: call(compose.addrs[1], "GET", "kept"), 30,
                    "the key read back after down/up") == b"across-down-up"


def test_the_original_partition_test_passes_against_the_containers(
        compose: Compose, tmp_path: Path) -> None:
    wait_for(compose.leader, 60, "the three containers agree on a leader")
    out = sh([str(ROOT / "chaos/partition-test.sh"), "--engine", "podman",
              "--project", compose.project, "--endpoints", ",".join(compose.addrs),
              "--rounds", "leader", "--before", "2", "--delay", "3", "--after", "6",
              "--out", str(tmp_path)],
             compose.env, timeout=180)
    summary = out.stdout[out.stdout.rfind("=== partition-test summary"):]
    assert out.returncode == 0, f"{summary}\n{out.stderr[-2000:]}"
    assert "leader: PASS" in summary
