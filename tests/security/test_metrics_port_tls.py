"""TLS and a token on the ops HTTP port of a real node (issue 13 and 16), certificates
made by the test: plain HTTP to the TLS port gets no answer (and a log line), curl and
Python's ssl with the CA work, a wrong or missing token on /metrics is 401 while /livez and
/readyz stay open, a stalled handshake neither blocks others nor outlives its deadline, and
with --metrics-tls-client-auth only a certificate of the CA gets in."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaos.cluster import LocalCluster, free_ports
from raftkv import certs

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

TOKEN = "metrics-token-0123456789abcdef"


class Node:
    """One real node with TLS on its client port and an ops port."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str,
                 client_tls: bool = True) -> None:
        self.certs = tmp_path / "certs"
        certs.create(self.certs)
        self.token_file = tmp_path / "metrics-token"
        self.token_file.write_text(TOKEN + "\n")
        self.token_file.chmod(0o600)
        crt, key, ca = (str(self.certs / n) for n in ("node.crt", "node.key", "ca.crt"))
        tls = ["--tls-cert", crt, "--tls-key", key, "--tls-ca", ca] if client_tls else []
        if client_tls:
            monkeypatch.setenv("RAFTKV_CACERT", ca)  # the harness's INFO calls
        else:
            monkeypatch.delenv("RAFTKV_CACERT", raising=False)
        self.port = free_ports(1)[0]
        self.cluster = LocalCluster(tmp_path / "c", nodes=1, fsync="never", extra_args=[
            *tls, "--metrics-addr", f"127.0.0.1:{self.port}",
            "--metrics-token-file", str(self.token_file), *args])
        self.cluster.start()
        try:
            self.cluster.wait_for_leader()
        except BaseException:
            self.cluster.close()
            raise

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.cluster.nodes[1].log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (log := self.log()):
                return log
            time.sleep(0.05)  # polling another process's log: no event to wait on
        raise AssertionError(f"{text!r} not in the node's log:\n{self.log()[-2000:]}")

    def curl(self, path: str, *args: str) -> tuple[int, str, str]:
        """(curl exit code, HTTP status or '000', body)."""
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w",
                              "\n%{http_code}", *args, self.url + path],
                             capture_output=True, text=True, timeout=20, check=False)
        body, _, status = out.stdout.rpartition("\n")
        return out.returncode, status, body + out.stderr


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    n = Node(tmp_path, monkeypatch)
    try:
        yield n
    finally:
        n.cluster.close()


def test_plain_http_to_the_tls_metrics_port_gets_no_answer(node: Node) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.request("GET", "/readyz")
        conn.getresponse()
    conn.close()
    node.wait_for_log("metrics port TLS handshake failed")
    assert "not a TLS handshake (plain text?)" in node.log()


def test_curl_with_the_ca_works_and_the_token_guards_only_metrics(node: Node) -> None:
    ca = str(node.certs / "ca.crt")
    # No CA: curl cannot verify the node's certificate (exit 60), so TLS is real.
    code, _, _ = node.curl("/readyz")
    assert code == 60
    assert node.curl("/readyz", "--cacert", ca)[:2] == (0, "200")
    assert node.curl("/livez", "--cacert", ca)[:2] == (0, "200")
    code, status, body = node.curl("/metrics", "--cacert", ca)
    assert (code, status) == (0, "401") and "raftkv_term" not in body
    assert node.curl("/metrics", "--cacert", ca, "-H", "Authorization: Bearer wrong-token-"
                     "0123456789")[1] == "401"
    assert node.curl("/metrics", "--cacert", ca, "-u", "prometheus:wrong")[1] == "401"
    code, status, body = node.curl("/metrics", "--cacert", ca, "-H",
                                   f"Authorization: Bearer {TOKEN}")
    assert (code, status) == (0, "200")
    assert "raftkv_term" in {f.name for f in text_string_to_metric_families(body)}
    assert node.curl("/metrics", "--cacert", ca, "-u", f"prometheus:{TOKEN}")[1] == "200"
    log = node.wait_for_log("metrics request unauthorized")
    assert TOKEN not in log and "wrong-token" not in log


def test_python_ssl_with_the_ca_and_a_401_challenge(node: Node) -> None:
    ctx = ssl.create_default_context(cafile=str(node.certs / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", node.port, timeout=10, context=ctx)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    assert resp.status == 401
    assert resp.headers.get_all("WWW-Authenticate") == [
        'Bearer realm="raftkv metrics"', 'Basic realm="raftkv metrics"']
    conn.close()
    conn = http.client.HTTPSConnection("127.0.0.1", node.port, timeout=10, context=ctx)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    assert resp.status == 200 and b"raftkv_is_leader" in resp.read()
    conn.close()


def test_a_stalled_handshake_blocks_nobody_and_is_cut(node: Node) -> None:
    ca = str(node.certs / "ca.crt")
    with socket.create_connection(("127.0.0.1", node.port), timeout=15) as stalled:
        assert node.curl("/readyz", "--cacert", ca)[:2] == (0, "200")  # served meanwhile
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # closed by the node, not by us
            assert stalled.recv(100) == b""
        assert time.monotonic() - started < 14
    node.wait_for_log("no handshake within 5 s")


def test_stalled_handshakes_over_the_cap_do_not_fail_the_probes(node: Node) -> None:
    """40 sockets (over the port's 32) stall in the TLS handshake; each newcomer evicts
    the oldest, so a real probe still gets its 200 (as on the plain port). Each sends
    the first bytes of a record: one that sends nothing is not even handed to the port
    until it does (TCP_DEFER_ACCEPT, raftkv.server.http)."""
    ca = str(node.certs / "ca.crt")
    holders = [socket.create_connection(("127.0.0.1", node.port), timeout=10)
               for _ in range(40)]
    for s in holders:
        s.sendall(b"\x16\x03\x01")  # a handshake record's header, cut short
    try:
        assert node.curl("/livez", "--cacert", ca)[:2] == (0, "200")
        assert node.curl("/readyz", "--cacert", ca)[:2] == (0, "200")
    finally:
        for s in holders:
            s.close()
    node.wait_for_log("evicted for a newcomer (port full)")


def test_client_certificate_required_when_asked(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    n = Node(tmp_path, monkeypatch, "--metrics-tls-client-auth")
    try:
        ca = str(n.certs / "ca.crt")
        code, status, _ = n.curl("/readyz", "--cacert", ca)
        assert code != 0 and status == "000"  # refused in the handshake: no HTTP at all
        mine = ["--cert", str(n.certs / "client.crt"), "--key", str(n.certs / "client.key")]
        assert n.curl("/readyz", "--cacert", ca, *mine)[:2] == (0, "200")
        assert n.curl("/metrics", "--cacert", ca, *mine)[1] == "401"  # the token still
        assert n.curl("/metrics", "--cacert", ca, *mine, "-H",
                      f"Authorization: Bearer {TOKEN}")[1] == "200"
    finally:
        n.cluster.close()


def test_a_certificate_of_its_own_on_a_plain_client_port(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--metrics-tls-cert/--metrics-tls-key: HTTPS on the metrics port alone."""
    other = tmp_path / "metrics-certs"
    certs.create(other)
    n = Node(tmp_path, monkeypatch, "--metrics-tls-cert", str(other / "node.crt"),
             "--metrics-tls-key", str(other / "node.key"), client_tls=False)
    try:
        assert n.curl("/readyz", "--cacert", str(other / "ca.crt"))[:2] == (0, "200")
        code, status, _ = n.curl("/readyz", "--cacert", str(n.certs / "ca.crt"))
        assert code != 0 and status == "000"  # the other CA does not verify it
    finally:
        n.cluster.close()
