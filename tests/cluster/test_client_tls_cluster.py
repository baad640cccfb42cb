"""TLS on the client port of real nodes (issue 13), certificates made by the test:
redis-cli --tls and redis-py ssl=True with a password work; plain text, garbage and a
stalled handshake get a closed socket and a log line while the node serves everyone else;
with --tls-client-auth only a certificate of the client CA gets in."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from redis.backoff import NoBackoff
from redis.retry import Retry

import client
from chaos.cluster import LocalCluster, free_port_base, raftkv_up
from client.security import tls_context
from raftkv import certs
from raftkv.probe import call, parse_info
from wire.reply import OK

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> LocalCluster:
    good = tmp_path / "certs"
    certs.create(good)
    # The harness's INFO calls go through raftkv.probe: TLS with this CA, and a password.
    monkeypatch.setenv("RAFTKV_CACERT", str(good / "ca.crt"))
    monkeypatch.setenv("RAFTKV_PASSWORD", "pw")
    monkeypatch.setenv("RAFTKV_CERT", str(good / "client.crt"))
    monkeypatch.setenv("RAFTKV_KEY", str(good / "client.key"))
    c = LocalCluster(tmp_path / "c", nodes=3, fsync="never", extra_args=[
        "--tls-cert", str(good / "node.crt"), "--tls-key", str(good / "node.key"),
        "--tls-ca", str(good / "ca.crt"), "--requirepass", "pw", *args])
    c.start()
    try:
        c.wait_for_leader()
    except BaseException:
        c.close()
        raise
    return c


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    c = start(tmp_path, monkeypatch)
    try:
        yield c
    finally:
        c.close()


def tls_client(c: LocalCluster, node: int, ca: Path, **kw: object) -> redis.Redis:
    host, port = c.client_addr(node)
    return redis.Redis(host=host, port=port, ssl=True, ssl_ca_certs=str(ca),
                       socket_timeout=10, retry=Retry(NoBackoff(), 0), **kw)


def wait_for_log(c: LocalCluster, node: int, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = c.nodes[node].log_path.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.05)  # polling another process's log: no event to wait on
    raise AssertionError(f"{text!r} not in node {node}'s log")


def closed_without_reply(sock: socket.socket, alert: bool = False) -> bool:
    """Closed with nothing sent; with ``alert``, a TLS alert record (content type 21) is
    allowed first: a record that looks like TLS but is garbage gets one from OpenSSL (as
    from any TLS server), plain text gets nothing."""
    data = b""
    try:
        while chunk := sock.recv(100):
            data += chunk
    except ConnectionResetError:
        pass
    if alert and data[:1] == b"\x15" and len(data) == 5 + int.from_bytes(data[3:5], "big"):
        return True
    return data == b""


def test_tls_clients_and_what_is_not_tls(cluster: LocalCluster, tmp_path: Path) -> None:
    c = cluster
    ca = tmp_path / "certs" / "ca.crt"
    leader = c.wait_for_leader()
    follower = next(i for i in c.nodes if i != leader)
    host, port = c.client_addr(follower)
    for protocol in (2, 3):
        r = tls_client(c, follower, ca, password="pw", protocol=protocol)
        assert r.set(f"k{protocol}", "v") and r.get(f"k{protocol}") == b"v"
    with pytest.raises(redis.AuthenticationError):
        tls_client(c, follower, ca).get("k2")
    out = subprocess.run(["redis-cli", "--tls", "--cacert", str(ca), "-h", host, "-p",
                          str(port), "--no-auth-warning", "-a", "pw", "GET", "k2"],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "v", out
    # A stalled handshake holds its slot only until the deadline; others are served meanwhile.
    stalled = socket.create_connection((host, port), timeout=15)
    # Plain text: a closed socket, not a reply.
    with socket.create_connection((host, port), timeout=10) as plain:
        plain.sendall(b"PING\r\n")
        assert closed_without_reply(plain)
    wait_for_log(c, follower, "not a TLS handshake")
    with socket.create_connection((host, port), timeout=10) as garbage:
        garbage.sendall(b"\x16\x03\x01\x00\x05" + b"\xff" * 200)
        assert closed_without_reply(garbage, alert=True)
    assert tls_client(c, follower, ca, password="pw").get("k2") == b"v"
    started = time.monotonic()
    assert closed_without_reply(stalled)
    stalled.close()
    assert time.monotonic() - started < 10  # cut at the 5 s handshake deadline
    wait_for_log(c, follower, "no handshake within 5 s")
    stats = parse_info(call(c.nodes[follower].client_addr, "INFO", "stats", timeout=10))
    assert int(stats["client_tls_handshake_failures"]) >= 3  # plain, garbage, stalled
    # A client that trusts another CA refuses the node (it is the client's check).
    other = tmp_path / "other"
    certs.create(other)
    with pytest.raises(redis.ConnectionError):
        tls_client(c, follower, other / "ca.crt", password="pw").ping()


def expired_client_certificate(ca_dir: Path, out: Path) -> tuple[Path, Path]:
    """A client certificate signed by the cluster's CA that expired yesterday."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(certs._name("expired client"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=3))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    out.mkdir()
    certs.write_pair(out, "client", cert, key)
    return out / "client.crt", out / "client.key"


def test_client_certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = start(tmp_path, monkeypatch, "--tls-client-auth")
    try:
        good = tmp_path / "certs"
        rogue = tmp_path / "rogue"
        certs.create(rogue)
        with pytest.raises(redis.ConnectionError):
            tls_client(c, 1, good / "ca.crt", password="pw").ping()
        with pytest.raises(redis.ConnectionError):
            tls_client(c, 1, good / "ca.crt", password="pw",
                       ssl_certfile=str(rogue / "client.crt"),
                       ssl_keyfile=str(rogue / "client.key")).ping()
        expired_cert, expired_key = expired_client_certificate(good, tmp_path / "expired")
        with pytest.raises(redis.ConnectionError):
            tls_client(c, 1, good / "ca.crt", password="pw", ssl_certfile=str(expired_cert),
                       ssl_keyfile=str(expired_key)).ping()
        r = tls_client(c, 1, good / "ca.crt", password="pw",
                       ssl_certfile=str(good / "client.crt"),
                       ssl_keyfile=str(good / "client.key"))
        assert r.ping() is True
        log = wait_for_log(c, 1, "client TLS handshake failed")
        wait_for_log(c, 1, "certificate has expired")
        assert "CERTIFICATE_VERIFY_FAILED" in log or "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log
    finally:
        c.close()


def test_raftkv_cli_and_the_client_library(cluster: LocalCluster, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster
    good = tmp_path / "certs"
    endpoints = ",".join(n.client_addr for n in c.nodes.values())

    def cli(*args: str, password: str | None = "pw") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
        if password is not None:
            env["RAFTKV_PASSWORD"] = password
        return subprocess.run([sys.executable, "-m", "client", "-e", endpoints, *args],
                              capture_output=True, text=True, timeout=30, env=env)

    ca = str(good / "ca.crt")
    assert cli("--tls", "--cacert", ca, "SET", "cli", "1").stdout.strip() == "OK"
    assert cli("--cacert", ca, "GET", "cli").stdout.strip() == "1"
    wrong = cli("--cacert", ca, "--pass", "nope", "GET", "cli")
    assert wrong.returncode == 2 and "WRONGPASS" in wrong.stderr
    anonymous = cli("--cacert", ca, "GET", "cli", password=None)
    assert anonymous.returncode == 1 and "NOAUTH" in anonymous.stdout + anonymous.stderr
    other = tmp_path / "other"
    certs.create(other)
    rogue = cli("--cacert", str(other / "ca.crt"), "GET", "cli")
    assert rogue.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in rogue.stderr
    plain = cli("GET", "cli")
    assert plain.returncode == 2
    status = cli("--cacert", ca, "status")
    assert status.returncode == 0 and "leader" in status.stdout

    async def library() -> object:
        async with client.connect(endpoints, ssl=tls_context(ca), password="pw") as kv:
            await kv.execute("SET", "lib", "2")
            return await kv.execute("GET", "lib")

    assert trio.run(library) == b"2"
    # raftkv status reads the same environment as raftkv.probe (set by the fixture).
    out = subprocess.run([sys.executable, "-m", "raftkv", "status", "--endpoints", endpoints],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.count(" up") == 3, out


def test_raftkv_up_tls(tmp_path: Path) -> None:
    base = free_port_base(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
    with raftkv_up(["--tls", "--data-dir", str(tmp_path / "d"),
                    "--port-base", str(base), "--fsync", "never"], env) as (_, lines):
        banner = "".join(lines)
        password = (tmp_path / "d" / "client-password").read_text().strip()
        assert "redis-cli --tls --cacert" in banner and password not in banner
        redis_line = next(line.split("  ")[1] for line in lines if "redis-cli --tls" in line)
        out = subprocess.run(f"{redis_line} SET up tls", shell=True, capture_output=True,
                             text=True, timeout=20, env=env)
        assert out.stdout.strip() == "OK", out
        plain = subprocess.run(["redis-cli", "-p", str(base + 2), "PING"],
                               capture_output=True, text=True, timeout=20)
        assert "PONG" not in plain.stdout


def test_join_and_member_commands_on_a_secured_cluster(cluster: LocalCluster) -> None:
    """A --join node asks the members over TLS with the password (RAFTKV_CACERT and
    RAFTKV_PASSWORD, inherited from the fixture's environment), and so does raftkv member."""
    c = cluster
    leader = c.wait_for_leader()
    assert call(c.nodes[leader].client_addr, "SET", "before-join", "1", timeout=10) == OK
    c.add_node(4)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            reply = call(c.nodes[4].client_addr, "GET", "before-join", timeout=10)
        except (OSError, ConnectionError):
            reply = None  # not listening yet
        if reply == b"1":
            break
        time.sleep(0.1)  # polling another process: no event to wait on
    else:
        raise AssertionError(f"node 4 never served the key: {c.logs_tail()}")
    endpoints = ",".join(n.client_addr for n in c.nodes.values())
    out = subprocess.run([sys.executable, "-m", "raftkv", "member", "list", "--endpoints",
                          endpoints], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and c.nodes[4].peer_addr in out.stdout, out
