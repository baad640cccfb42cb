"""Failed AUTHs per source address (raftkv.server.auth_limit): attack14 made 13,390
password guesses a second by reconnecting every 10 failures."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftkv.server import auth
from raftkv.server.acl import AccessControl
from raftkv.server.auth_limit import FailedAuths
from raftkv.server.commands import execute
from raftkv.server.connection import Connection
from wire.reply import OK, ErrorReply


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_source_has_a_burst_of_failures_then_its_rate() -> None:
    clock = Clock()
    limit = FailedAuths(clock, burst=3, rate=10.0)
    for _ in range(3):
        assert limit.allowed("10.0.0.1")
        limit.failed("10.0.0.1")
    assert not limit.allowed("10.0.0.1")
    assert limit.retry_after("10.0.0.1") == 0.1
    assert limit.allowed("10.0.0.2")  # another source is not touched
    clock.now += 0.1
    assert limit.allowed("10.0.0.1")  # one try back after 1 / rate
    limit.failed("10.0.0.1")
    assert not limit.allowed("10.0.0.1")
    clock.now += 60
    assert limit.retry_after("10.0.0.1") == 0.0  # never more than the burst back


def test_the_table_of_sources_is_bounded_and_forgets_the_stalest() -> None:
    limit = FailedAuths(Clock(), burst=1, max_sources=2)
    for source in ("a", "b", "a", "c"):  # "a" used again: "b" is the stalest
        limit.failed(source)
    assert len(limit._tokens) == 2
    assert limit.allowed("b") and not limit.allowed("a") and not limit.allowed("c")


def _node(acl: AccessControl) -> Any:
    return SimpleNamespace(id=1, client_server=SimpleNamespace(acl=acl, connections={}),
                           settings=SimpleNamespace(enable_scripts=False))


def _auth(node: Any, conn: Connection, password: str) -> Any:
    conn.server = node.client_server
    return execute(node, conn, [b"AUTH", password.encode()]).value


def test_a_guessing_source_is_refused_before_its_password_is_checked() -> None:
    clock = Clock()
    acl = AccessControl.configure(requirepass="s3cret")
    acl.failures = FailedAuths(clock, burst=3)
    node = _node(acl)
    conns = [Connection(i, f"192.0.2.7:{5000 + i}") for i in range(3)]
    for i, conn in enumerate(conns):  # new connections: the per-connection bound never hits
        conn.source = "192.0.2.7"
        assert _auth(node, conn, f"guess{i}") == auth.WRONGPASS
        assert not conn.closing
    late = Connection(9, "192.0.2.7:6000")
    late.source = "192.0.2.7"
    refused = _auth(node, late, "s3cret")  # the right one: not even checked now
    assert isinstance(refused, ErrorReply) and "too many failed authentications" in refused.text
    assert late.closing and late.user is None
    other = Connection(10, "198.51.100.1:5000")
    other.source = "198.51.100.1"
    assert _auth(node, other, "s3cret") == OK  # another address is not refused
    clock.now += 0.1
    again = Connection(11, "192.0.2.7:6001")
    again.source = "192.0.2.7"
    assert _auth(node, again, "s3cret") == OK  # a try back after 1 / RATE
