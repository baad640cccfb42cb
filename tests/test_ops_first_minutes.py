"""The first five minutes of a new user: a second `raftkv up`, a port already in use, one
status renderer behind `raftkv status` and `raftkv-cli status`, `raftkv-cli help` answered
locally, the REPL's help listing the admin commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster, free_ports
from client.help import overview
from raftkv.local_cluster import banner, ports_of, preflight

pytestmark = pytest.mark.timeout(90)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def closed_endpoint() -> str:
    return f"127.0.0.1:{free_ports(1)[0]}"


def test_help_is_answered_without_a_cluster() -> None:
    out = run("-m", "client", "help", env={"RAFTKV_ENDPOINTS": closed_endpoint()})
    assert out.returncode == 0, out.stderr
    for word in ("RAFT", "SNAPSHOT", "ADDNODE", "PROMOTE", "REMOVENODE", "GET"):
        assert word in out.stdout
    one = run("-m", "client", "help", "set", env={"RAFTKV_ENDPOINTS": closed_endpoint()})
    assert one.returncode == 0 and "SET key value" in one.stdout
    assert "SNAPSHOT" in overview() and "REMOVENODE" in overview()  # the REPL's `help`


@pytest.mark.slow
def test_both_status_commands_share_columns_json_and_exit_codes(tmp_path: Path) -> None:
    down = closed_endpoint()
    a = run("-m", "raftkv", "status", "--endpoints", down)
    b = run("-m", "client", "--endpoints", down, "status")
    assert a.returncode == b.returncode == 2
    assert a.stdout.splitlines()[0].split() == b.stdout.splitlines()[0].split()
    with LocalCluster(tmp_path) as c:
        c.wait_for_leader()
        eps = ",".join(n.client_addr for n in c.nodes.values())
        a = run("-m", "raftkv", "status", "--endpoints", eps, "--json")
        b = run("-m", "client", "--endpoints", eps, "--json", "status")
        assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
        ja, jb = json.loads(a.stdout), json.loads(b.stdout)
        assert [set(row) for row in ja] == [set(row) for row in jb]
        assert sorted(row["role"] for row in ja).count("leader") == 1
        c.kill(3)
        a = run("-m", "raftkv", "status", "--endpoints", eps)
        b = run("-m", "client", "--endpoints", eps, "status")
        assert a.returncode == b.returncode == 1
        assert a.stdout.splitlines()[0] == b.stdout.splitlines()[0]
        assert "down" in a.stdout.splitlines()[-1]


def test_preflight_names_the_busy_address_and_its_flag() -> None:
    # A base whose ports are all free now (other engineers run clusters on this machine).
    base = next(b for b in range(40000 + (os.getpid() % 50) * 100, 62000, 300)
                if preflight(3, "127.0.0.1", b) is None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports_of(2, base)["--peer-addr"]))
        problem = preflight(3, "127.0.0.1", base)
    assert problem is not None and "\n" not in problem
    assert f"127.0.0.1:{base + 102} (--peer-addr of node 2)" in problem


def test_banner_columns_align_and_suggest_no_nc() -> None:
    text = banner(3, "127.0.0.1", 7000, {"node_id": "1", "term": "2"}, "./data")
    assert "nc " not in text
    rows = [line for line in text.splitlines() if line.startswith("  ")]
    starts = {len(line) - len(line[2:].split("  ", 1)[1].lstrip()) for line in rows}
    assert len(rows) >= 3 and len(starts) == 1  # every description starts in one column
    assert "http://127.0.0.1:9001/metrics" in text


@pytest.mark.slow
def test_a_second_raftkv_up_says_so_in_one_line(tmp_path: Path) -> None:
    base = 0
    for candidate in range(21000, 60000, 700):
        if preflight(3, "127.0.0.1", candidate) is None:
            base = candidate
            break
    first = subprocess.Popen(
        [sys.executable, "-m", "raftkv", "up", "--data-dir", str(tmp_path / "a"),
         "--port-base", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert first.stdout is not None
        assert "up: leader is node" in first.stdout.readline()
        second = run("-m", "raftkv", "up", "--data-dir", str(tmp_path / "b"),
                     "--port-base", str(base))
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "another RaftKV cluster is already answering on" in lines[0]
        assert not (tmp_path / "b" / "node-1").exists()  # it started nothing
    finally:
        os.killpg(first.pid, signal.SIGINT)
        try:
            first.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
