"""The ops HTTP port of real nodes (--metrics-addr), read with a real HTTP client (urllib).

/metrics parses as the Prometheus text format and carries the issue's series with values
that follow what clients did; /livez and /readyz answer 200 on a healthy cluster, and a node
cut off from both peers turns /readyz 503 (with a reason) while /livez stays 200.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from chaos.cluster import LocalCluster, free_ports

pytestmark = pytest.mark.timeout(120)

EXPECTED = {
    "raftkv_term", "raftkv_is_leader", "raftkv_leader_changes", "raftkv_commit_index",
    "raftkv_applied_index", "raftkv_last_log_index", "raftkv_snapshot_index",
    "raftkv_proposals", "raftkv_proposals_failed", "raftkv_forwarded", "raftkv_reads",
    "raftkv_commands", "raftkv_command_duration_seconds", "raftkv_wal_fsync_duration_seconds",
    "raftkv_wal_bytes", "raftkv_snapshot_duration_seconds", "raftkv_peer_up",
    "raftkv_peer_send_queue", "raftkv_follower_lag_entries", "raftkv_client_connections",
    "raftkv_keys", "process_cpu_seconds", "process_resident_memory_bytes",
}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(url + "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(url: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(get(url + "/metrics")[1])}


def dashboard_families() -> set[str]:
    path = Path(__file__).parents[2] / "deploy" / "grafana" / "raftkv.json"
    exprs = [t["expr"] for p in json.loads(path.read_text())["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b(?:raftkv|process)_[a-z_]+", e)}
    assert len(names) >= 15
    return {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in names}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[LocalCluster, dict[int, str]]]:
    ports = free_ports(3)
    urls = {i: f"http://127.0.0.1:{ports[i - 1]}" for i in (1, 2, 3)}
    args = {i: ["--metrics-addr", f"127.0.0.1:{ports[i - 1]}"] for i in (1, 2, 3)}
    with LocalCluster(tmp_path, node_args=args) as c:
        c.wait_for_leader()
        yield c, urls


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)  # polling other processes: there is no event to wait on


@pytest.mark.slow
def test_metrics_health_and_isolated_node_not_ready(cluster) -> None:  # type: ignore[no-untyped-def]
    c, urls = cluster
    leader = c.wait_for_leader()
    follower = next(i for i in (1, 2, 3) if i != leader)
    host, port = c.client_addr(follower)
    r = redis.Redis(host=host, port=port, socket_timeout=10)
    for k in range(20):
        assert r.set(f"k{k}", "v") is True
    assert r.get("k0") == b"v"

    for url in urls.values():
        assert families(url) >= EXPECTED, EXPECTED - families(url)
        assert get(url + "/livez")[0] == 200
        wait_for(lambda url=url: get(url + "/readyz")[0] == 200)
    # Every series the Grafana dashboard plots is one a node exports.
    assert dashboard_families() <= families(urls[leader]), (
        dashboard_families() - families(urls[leader]))

    lead = samples(urls[leader])
    fol = samples(urls[follower])
    assert lead[("raftkv_is_leader", ())] == 1 and fol[("raftkv_is_leader", ())] == 0
    assert fol[("raftkv_commands_total", (("command", "set"),))] == 20
    assert fol[("raftkv_forwarded_total", ())] >= 20
    assert fol[("raftkv_reads_total", (("kind", "follower"),))] >= 1
    assert lead[("raftkv_proposals_total", ())] >= 20
    assert lead[("raftkv_wal_bytes_total", ())] > 0
    assert lead[("raftkv_wal_fsync_duration_seconds_count", ())] > 0
    assert fol[("raftkv_command_duration_seconds_count", (("command", "set"),))] == 20
    assert lead[("raftkv_commit_index", ())] >= 21
    wait_for(lambda: samples(urls[follower])[("raftkv_keys", ())] == 20)
    peers = [str(i) for i in (1, 2, 3) if i != leader]
    for p in peers:
        assert lead[("raftkv_peer_up", (("peer", p),))] == 1
        assert ("raftkv_follower_lag_entries", (("peer", p),)) in lead
    # A client's command name never becomes a label of its own.
    with pytest.raises(redis.ResponseError):
        r.execute_command("NOSUCHCOMMAND", "x")
    after = samples(urls[follower])
    assert after[("raftkv_commands_total", (("command", "other"),))] == 1
    assert not any("nosuchcommand" in str(labels).lower() for _, labels in after)

    # Cut the follower off from both peers (pause them): /readyz turns 503 within a few
    # election timeouts (15-30 ticks of 10 ms), /livez stays 200.
    for i in (1, 2, 3):
        if i != follower:
            c.pause(i)
    started = time.monotonic()
    wait_for(lambda: get(urls[follower] + "/readyz")[0] == 503, timeout=5)
    took = time.monotonic() - started
    status, reason = get(urls[follower] + "/readyz")
    assert status == 503 and reason.strip(), reason
    assert took < 5
    assert get(urls[follower] + "/livez")[0] == 200
    for i in (1, 2, 3):
        if i != follower:
            c.resume(i)
    wait_for(lambda: get(urls[follower] + "/readyz")[0] == 200, timeout=15)


def test_http_port_rejects_what_it_does_not_serve(cluster) -> None:  # type: ignore[no-untyped-def]
    _, urls = cluster
    url = urls[1]
    assert get(url + "/nope")[0] == 404
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/metrics", body=b"x")
    resp = conn.getresponse()
    assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"
    conn.close()
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("HEAD", "/readyz")
    resp = conn.getresponse()
    assert resp.status in (200, 503) and resp.read() == b""
    conn.close()
    # An endless request head is cut off at its bound instead of growing memory.
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000)
        reply = s.recv(200)
    assert reply.startswith(b"HTTP/1.1 431")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"garbage\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 400")
