"""docker-compose.secure.yml for real, under podman (issue 13): the secrets container makes
certificates, a peer secret, an admin password and a metrics token in a volume; three nodes
with client TLS, peer mutual TLS plus the secret, an ACL file and an HTTPS metrics port
elect a leader without --insecure; the README's connect lines work as written (with this
project's container names and ports); plain text, no password, no token each get nothing;
the HEALTHCHECK (HTTPS /readyz) passes; down/up keeps the data and the secrets.

The image is built from this checkout under a tag of its own (never raftkv:latest, which
other checkouts on a shared machine may be using). Where podman cannot build or start it,
the test fails with the tool's own words: there is no skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from chaos.cluster import free_ports

ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/raftkv:secure-test"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
T = TypeVar("T")


def sh(argv: list[str] | str, env: dict[str, str] | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=timeout, check=False, shell=isinstance(argv, str))


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.25)  # polling containers: there is no event to wait on


class SecureCompose:
    """One podman-compose project of docker-compose.secure.yml on free loopback ports."""

    def __init__(self, workdir: Path) -> None:
        self.project = f"rkvsec{os.getpid()}"
        self.workdir = workdir
        ports = free_ports(6)
        self.client_ports, self.metrics_ports = ports[:3], ports[3:]
        self.env = {**os.environ, "RAFTKV_IMAGE": TAG, "RAFTKV_NAME": self.project,
                    **{f"RAFTKV_HOST_PORT{i}": str(p)
                       for i, p in enumerate(self.client_ports, start=1)},
                    **{f"RAFTKV_METRICS_PORT{i}": str(p)
                       for i, p in enumerate(self.metrics_ports, start=1)}}
        self.ca = workdir / "ca.crt"
        self.password = workdir / "admin-password"

    def __call__(self, *args: str, timeout: float = 120) -> str:
        out = sh(["podman-compose", "-p", self.project, "-f", "docker-compose.secure.yml",
                  *args], self.env, timeout)
        assert out.returncode == 0, f"podman-compose {' '.join(args)}:\n{out.stderr[-3000:]}"
        return out.stdout

    def container(self, node: int) -> str:
        return f"{self.project}-node{node}"

    def fetch_secrets(self) -> None:
        """The README's lines: the CA and the admin password out of node1's volume."""
        c = self.container(1)
        for line in (f"podman exec {c} cat /secrets/ca.crt > {self.ca}",
                     f"(umask 077; podman exec {c} cat /secrets/admin-password > "
                     f"{self.password})"):
            out = sh(line, self.env)
            assert out.returncode == 0, (line, out.stderr)

    def redis_cli(self, node: int, *args: str) -> subprocess.CompletedProcess[str]:
        """As the README says: REDISCLI_AUTH=... redis-cli --tls --cacert ca.crt --user admin"""
        env = {**self.env, "REDISCLI_AUTH": self.password.read_text().strip()}
        return sh(["redis-cli", "--tls", "--cacert", str(self.ca), "-p",
                   str(self.client_ports[node - 1]), "--user", "admin", *args], env, 30)

    def info(self, node: int) -> dict[str, str]:
        out = self.redis_cli(node, "INFO", "raft").stdout
        return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)

    def leader(self) -> int | None:
        ids = {self.info(n).get("leader_id") for n in (1, 2, 3)}
        return int(ids.pop()) if len(ids) == 1 and None not in ids and "0" not in ids else None

    def curl(self, node: int, path: str, *args: str) -> tuple[int, str, str]:
        out = sh(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", *args,
                  f"https://127.0.0.1:{self.metrics_ports[node - 1]}{path}"], self.env, 30)
        body, _, status = out.stdout.rpartition("\n")
        return out.returncode, status, body


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCompose]:
    packages = sh([str(ROOT / ".ci/debian-packages")], timeout=900)
    assert packages.returncode == 0, f".ci/debian-packages:\n{packages.stderr[-3000:]}"
    build = sh([sys.executable, "-c", "from chaos.cli import main; main()", "image", "build",
                "--engine", "podman", "--tag", TAG], timeout=900)
    assert build.returncode == 0, f"image build:\n{build.stdout[-2000:]}{build.stderr[-3000:]}"
    c = SecureCompose(tmp_path_factory.mktemp("secure"))
    try:
        c("up", "-d")
        wait_for(lambda: sh(["podman", "exec", c.container(1), "test", "-f",
                             "/secrets/ready"]).returncode == 0, 60, "the secrets are made")
        c.fetch_secrets()
        yield c
    finally:
        sh(["podman-compose", "-p", c.project, "-f", "docker-compose.secure.yml", "down", "-v"],
           c.env, 120)
        sh(["podman", "network", "rm", "-f", f"{c.project}_default"], timeout=60)


def test_the_secured_cluster_serves_only_authenticated_tls_clients(
        compose: SecureCompose) -> None:
    c = compose
    leader = wait_for(c.leader, 90, "the three secured containers agree on a leader")
    assert c.info(3)["leader_client_addr"] == f"node{leader}:7001"
    assert c.redis_cli(1, "SET", "secure", "kept").stdout.strip() == "OK"
    assert c.redis_cli(3, "GET", "secure").stdout.strip() == "kept"
    # Plain text gets a closed socket; TLS without a password gets NOAUTH; a wrong one
    # WRONGPASS; the default user is off.
    plain = sh(["redis-cli", "-p", str(c.client_ports[0]), "PING"], timeout=30)
    assert "PONG" not in plain.stdout
    anonymous = sh(["redis-cli", "--tls", "--cacert", str(c.ca), "-p", str(c.client_ports[0]),
                    "GET", "secure"], timeout=30)
    assert "NOAUTH" in anonymous.stdout and "kept" not in anonymous.stdout
    wrong = sh(["redis-cli", "--tls", "--cacert", str(c.ca), "-p", str(c.client_ports[1]),
                "--user", "admin", "--pass", "wrong", "--no-auth-warning", "GET", "secure"],
               timeout=30)
    assert "WRONGPASS" in wrong.stdout + wrong.stderr and "kept" not in wrong.stdout
    # Nothing runs with --insecure (protected mode holds with TLS, peer auth and the ACL).
    for n in (1, 2, 3):
        logs = sh(["podman", "logs", c.container(n)])
        assert "--insecure" not in logs.stdout + logs.stderr
        assert "node serving" in logs.stdout + logs.stderr


def test_the_secured_metrics_port_and_healthcheck(compose: SecureCompose) -> None:
    c = compose
    wait_for(c.leader, 90, "a leader")
    token = sh(["podman", "exec", c.container(2), "cat", "/secrets/metrics-token"]).stdout
    code, status, body = c.curl(2, "/metrics", "--cacert", str(c.ca), "-H",
                                f"Authorization: Bearer {token.strip()}")
    assert (code, status) == (0, "200") and "raftkv_term" in body
    assert c.curl(2, "/metrics", "--cacert", str(c.ca))[1] == "401"
    assert c.curl(2, "/readyz", "--cacert", str(c.ca))[:2] == (0, "200")
    plain = sh(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                f"http://127.0.0.1:{c.metrics_ports[1]}/readyz"], timeout=30)
    assert plain.stdout == "000"
    # The compose file's HEALTHCHECK (HTTPS /readyz with the volume's CA) passes.
    health = sh(["podman", "healthcheck", "run", c.container(3)])
    assert health.returncode == 0, health.stdout + health.stderr


def test_down_up_keeps_the_data_and_the_secrets(compose: SecureCompose) -> None:
    c = compose
    wait_for(c.leader, 90, "a leader")
    assert c.redis_cli(2, "SET", "across", "down-up").stdout.strip() == "OK"
    c("down")  # the named volumes stay, the secrets volume too
    c("up", "-d")
    wait_for(c.leader, 90, "a leader after down/up")
    # The same CA and password still work: the secrets container made nothing new.
    assert wait_for(lambda: c.redis_cli(1, "GET", "across").stdout.strip(), 30,
                    "the key read back after down/up") == "down-up"
