"""AUTH and ACL users on real nodes (issue 13), with redis-py (RESP2 and RESP3) and
redis-cli: Redis's error texts reach the clients as their exception classes, a read-only
user is denied a write on a follower and on the leader (the follower refuses it itself:
nothing reaches the log), HELLO AUTH is checked, and ACL LOAD rereads the file."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

import client as raftkv_client
from chaos.cluster import LocalCluster
from raftkv.kv.features import FEATURE_LEVEL
from raftkv.probe import call, parse_info
from wire.addr import parse_addr
from wire.reply import OK, ErrorReply
from wire.resp import encode_command
from wire.resp_reply import NEED_MORE, ReplyParser

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ACL = """\
user admin on >adminpw ~* +@all
user reader on >readpw ~* +@read +@connection
user app on >apppw ~app:* +@all -@admin -@dangerous
"""


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    acl = tmp_path / "users.acl"
    acl.write_text(ACL)
    # The harness's own INFO calls authenticate through raftkv.probe (RAFTKV_PASSWORD).
    monkeypatch.setenv("RAFTKV_PASSWORD", "defaultpw")
    c = LocalCluster(tmp_path / "c", nodes=3, fsync="never",
                     extra_args=["--acl-file", str(acl), "--requirepass", "defaultpw"])
    with c.serving():
        yield c


def client(c: LocalCluster, node: int, protocol: int = 2, **kw: object) -> redis.Redis:
    host, port = c.client_addr(node)
    # No retries: redis-py retries an AuthenticationError (a ConnectionError) with back-off.
    return redis.Redis(host=host, port=port, protocol=protocol, socket_timeout=10,
                       retry=Retry(NoBackoff(), 0), **kw)


def last_index(c: LocalCluster, node: int) -> int:
    return int(parse_info(call(c.nodes[node].client_addr, "INFO", "raft",
                               timeout=10))["last_log_index"])


def settled_index(c: LocalCluster, leader: int, timeout: float = 20.0) -> int:
    """The leader's last index once it has published every voter (raftkv.node.publish)
    and recorded their feature levels (raftkv.node.features): those entries follow an
    election by a commit round each, and under load they came between a test's before and
    after (index 5, not 3: a flake)."""
    voters = ",".join(map(str, sorted(c.nodes)))
    deadline = time.monotonic() + timeout
    while True:
        info = parse_info(call(c.nodes[leader].client_addr, "INFO", "raft", timeout=10))
        if ((info["published"] == voters and info.get("cluster_level") == str(FEATURE_LEVEL))
                or time.monotonic() > deadline):
            return int(info["last_log_index"])
        time.sleep(0.05)


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_sees_redis_errors(cluster: LocalCluster, protocol: int) -> None:
    c = cluster
    leader = c.wait_for_leader()
    follower = next(i for i in c.nodes if i != leader)
    anonymous = client(c, follower, protocol=2)
    with pytest.raises(redis.AuthenticationError, match="Authentication required"):
        anonymous.get("k")
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        client(c, follower, protocol, username="admin", password="wrong").ping()
    with pytest.raises(redis.AuthenticationError):
        client(c, follower, protocol, password="wrong").ping()
    assert client(c, follower, protocol, password="defaultpw").set("k", "v")
    admin = client(c, follower, protocol, username="admin", password="adminpw")
    assert admin.acl_whoami() in ("admin", b"admin")  # decoded in RESP2 only
    assert admin.get("k") == b"v"
    for node in (follower, leader):
        reader = client(c, node, protocol, username="reader", password="readpw")
        before = settled_index(c, leader)
        with pytest.raises(redis.exceptions.NoPermissionError,
                           match="User reader has no permissions to run the 'set' command"):
            reader.set("k", "w")
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.execute_command("RAFT", "REMOVENODE", str(follower))
        assert reader.get("k") == b"v"
        assert last_index(c, leader) == before  # nothing was proposed
    app = client(c, follower, protocol, username="app", password="apppw")
    assert app.set("app:1", "x")
    with pytest.raises(redis.exceptions.NoPermissionError, match="No permissions to access"):
        app.get("k")
    with pytest.raises(redis.exceptions.NoPermissionError, match="'flushall'"):
        app.flushall()
    assert admin.get("app:1") == b"x"
    stats = parse_info(call(c.nodes[follower].client_addr, "INFO", "stats", timeout=10))
    assert int(stats["acl_access_denied_cmd"]) >= 3  # SET, RAFT, FLUSHALL
    assert int(stats["acl_access_denied_key"]) >= 1
    assert int(stats["acl_access_denied_auth"]) >= 2


def test_redis_cli_and_acl_load(cluster: LocalCluster, tmp_path: Path) -> None:
    c = cluster
    host, port = c.client_addr(1)
    base = ["redis-cli", "-h", host, "-p", str(port)]

    def cli(*args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run([*base, *args], capture_output=True, text=True, timeout=20,
                             env=env)
        return (out.stdout + out.stderr).strip()

    assert "NOAUTH Authentication required." in cli("GET", "k")
    assert cli("--user", "admin", "--pass", "adminpw", "--no-auth-warning",
               "SET", "k", "1") == "OK"
    assert "WRONGPASS" in cli("--user", "admin", "--pass", "nope", "--no-auth-warning",
                              "GET", "k")
    assert cli("--no-auth-warning", "-a", "defaultpw", "ACL", "WHOAMI") == "default"
    assert "NOPERM" in cli("--user", "reader", "--pass", "readpw", "--no-auth-warning",
                           "ACL", "LIST")
    listing = cli("--user", "admin", "--pass", "adminpw", "--no-auth-warning", "ACL", "LIST")
    assert "adminpw" not in listing and "user reader on #" in listing
    # ACL LOAD rereads the file on the node it is sent to.
    (tmp_path / "users.acl").write_text(ACL.replace(">readpw", ">newpw"))
    assert cli("--user", "admin", "--pass", "adminpw", "--no-auth-warning",
               "ACL", "LOAD") == "OK"
    assert "WRONGPASS" in cli("--user", "reader", "--pass", "readpw", "--no-auth-warning",
                              "GET", "k")
    assert cli("--user", "reader", "--pass", "newpw", "--no-auth-warning", "GET", "k") == "1"


def exchange(addr: str, payload: bytes, replies: int) -> list[object]:
    """Send ``payload`` on a fresh connection; the first ``replies`` replies (fewer if the
    node closes the connection first)."""
    host, port = parse_addr(addr)
    parser = ReplyParser()
    out: list[object] = []
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(payload)
        while len(out) < replies:
            data = sock.recv(65536)
            if not data:
                break
            parser.feed(data)
            while len(out) < replies and (reply := parser.next_reply()) is not NEED_MORE:
                out.append(reply)
    return out


def test_only_small_commands_before_auth(cluster: LocalCluster) -> None:
    addr = cluster.nodes[1].client_addr
    many = encode_command("GET", *["k"] * 10)  # 11 arguments
    (reply,) = exchange(addr, many, 1)
    assert isinstance(reply, ErrorReply) and "Protocol error" in reply.text
    big = encode_command("AUTH", "x" * 20_000)
    (reply,) = exchange(addr, big, 1)
    assert isinstance(reply, ErrorReply) and "Protocol error" in reply.text
    # Once authenticated (in the same pipeline), the usual limits apply.
    payload = encode_command("AUTH", "defaultpw") + encode_command("SET", "big", "v" * 100_000)
    payload += encode_command("MGET", *["k"] * 20)
    auth, stored, values = exchange(addr, payload, 3)
    assert auth == OK and stored == OK and values == [None] * 20


def test_client_library_sessions_as_a_limited_user(cluster: LocalCluster) -> None:
    """The client library wraps unsafe writes in RAFT ONCE (sessions): a user without
    @admin can use them, and they carry only what the user may run."""
    endpoints = ",".join(n.client_addr for n in cluster.nodes.values())

    async def run() -> tuple[object, object]:
        async with raftkv_client.connect(endpoints, username="app", password="apppw") as kv:
            first = await kv.incr("app:n")
            second = await kv.incr("app:n")
            try:
                await kv.incr("other")
            except raftkv_client.ResponseError as exc:
                return (first, second), str(exc)
            return (first, second), None

    counts, denied = trio.run(run)
    assert counts == (1, 2)
    assert denied is not None and "No permissions to access a key" in denied
