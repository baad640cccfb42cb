"""Failed AUTHs per source address (raftkv.server.auth_limit): attack14 made 13,390
password guesses a second by reconnecting every 10 failures."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftkv.server import auth
from raftkv.server.acl import AccessControl
from raftkv.server.auth_limit import SUBNET_FACTOR, FailedAuths, auth_source, subnet_of
from raftkv.server.client_port import source_key
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


def test_the_table_forgets_only_refilled_sources_and_new_ones_share_one_bucket() -> None:
    clock = Clock()
    limit = FailedAuths(clock, burst=1, rate=1.0, max_sources=2)
    limit.failed("a")
    limit.failed("b")  # the table is full of used sources
    assert limit.allowed("c")  # a new one: the overflow bucket's try
    limit.failed("c")
    assert not limit.allowed("d") and not limit.allowed("a")  # overflow used up too
    assert len(limit._tokens) == 3  # a, b and the overflow bucket
    clock.now += 1.0  # "a" and "b" refilled: forgetting one loses nothing
    limit.failed("d")
    assert "d" in limit._tokens and len(limit._tokens) == 3
    assert not limit.allowed("d")


def test_a_failures_address_is_the_whole_host_and_mapped_ipv4_is_ipv4() -> None:
    assert auth_source("[2001:db8::1]:6379") == "2001:db8::1"
    assert auth_source("[::ffff:192.0.2.1]:6379") == "192.0.2.1"
    assert auth_source("192.0.2.1:6379") == "192.0.2.1"


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


def test_attack16_a_neighbour_on_the_same_ipv6_subnet_cannot_lock_a_client_out() -> None:
    """attack16: source_key counts an IPv6 address as its /64, but a /64 is a whole LAN or
    cloud subnet (an AWS VPC subnet, a SLAAC office LAN, every fe80:: link-local host of a
    link), not one host: one neighbour's 100 wrong passwords, then 10 a second, refuse
    every other machine of the subnet its RIGHT password, indefinitely."""
    clock = Clock()
    acl = AccessControl.configure(requirepass="s3cret")
    acl.failures = FailedAuths(clock)
    node = _node(acl)
    for prefix in ("2001:db8:1:2", "fe80:"):
        for i in range(200):  # the neighbour guesses (new connections)
            bad = Connection(i, f"[{prefix}::bad]:{5000 + i}")
            bad.source = source_key(f"{prefix}::bad")
            _auth(node, bad, f"guess{i}")
        good = Connection(999, f"[{prefix}::10]:6000")
        good.source = source_key(f"{prefix}::10")  # another machine of the same subnet
        assert _auth(node, good, "s3cret") == OK, prefix


def test_attack16_a_source_out_of_tries_gets_none_back_by_filling_the_table() -> None:
    """attack16: with the table full the stalest source is forgotten, even one with no
    tries left, and comes back with a whole burst: a guesser who owns a /48 (65,536 /64s,
    what an IPv6 customer is given) cycles through MAX_SOURCES + 1 of them and guesses
    without limit at the same instant (4,097 x 100 guesses with the clock stopped;
    here with a table of 8: 900, and the first /64 gets 100 more). Entries refilled to
    the burst could be forgotten losslessly; an exhausted one cannot."""
    clock = Clock()
    limit = FailedAuths(clock, max_sources=8)  # (MAX_SOURCES: the same, 4,096 times slower)
    sources = [source_key(f"2001:db8:7:{i:x}::1") for i in range(8 + 1)]
    guesses = 0
    for source in sources:
        while limit.allowed(source):
            limit.failed(source)
            guesses += 1
    assert not limit.allowed(sources[0]), (
        f"{guesses} guesses at one instant, and the first /64 is allowed again")


class CountingClock(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_a_full_table_finds_the_refilled_address_without_reading_every_one() -> None:
    """tidy17: with the table full, each failed AUTH scanned every address (4,096) for one
    refilled to the burst. The rules stay: only a refilled address is forgotten (here the
    one in the middle of the table), an exhausted one never, new ones share OVERFLOW."""
    clock = CountingClock()
    limit = FailedAuths(clock, burst=2, rate=1.0, max_sources=1000)
    sources = [f"10.0.{i // 256}.{i % 256}" for i in range(1000)]
    for source in sources:
        limit.failed(source)
        if source != sources[500]:
            limit.failed(source)  # every try used but the middle one's: it refills first
    clock.reads = 0
    for new in ("192.0.2.1", "192.0.2.2"):
        assert limit.allowed(new)  # (OVERFLOW's two tries)
        limit.failed(new)
    assert clock.reads < 40, clock.reads  # (every address's tokens read: over 2,000)
    assert "192.0.2.1" not in limit._tokens and not limit.allowed("192.0.2.9")
    clock.now += 1.0  # the middle one is refilled, no other
    clock.reads = 0
    limit.failed("192.0.2.3")
    assert clock.reads < 20, clock.reads
    assert "192.0.2.3" in limit._tokens and sources[500] not in limit._tokens
    assert all(s in limit._tokens for s in sources if s != sources[500])
    assert limit._tokens[sources[0]] == (0.0, 100.0)  # the exhausted ones kept their count
    for _ in range(10_000):  # one address failing again and again: its stale refill
        limit.failed(sources[1])  # times are dropped, bounded by the table
    assert len(limit._refills) <= 2 * len(limit._tokens) + 16


def test_an_ipv6_subnet_has_ten_times_the_bucket_and_ipv4_stays_per_address() -> None:
    """attack17: a machine owning a /64 takes a new address every burst, so the /64 has
    a bucket of SUBNET_FACTOR x the burst and the rate; an IPv4 /24 is not one machine."""
    clock = Clock()
    limit = FailedAuths(clock, burst=2, rate=1.0)
    guesses = 0
    for i in range(1, 20):
        source = f"2001:db8:5::{i:x}"
        while limit.allowed(source):
            limit.failed(source)
            guesses += 1
    assert guesses == 2 * SUBNET_FACTOR
    fresh = "2001:db8:5::ffff"
    assert not limit.allowed(fresh) and limit.retry_after(fresh) == 1.0 / SUBNET_FACTOR
    assert limit.allowed("2001:db8:6::1")  # another /64 is not touched
    clock.now += 1.0 / SUBNET_FACTOR
    assert limit.allowed(fresh)  # the /64 refills at SUBNET_FACTOR x the rate
    for i in range(1, 20):  # IPv4 (and mapped IPv4): each address its own burst
        source = auth_source(f"[::ffff:192.0.2.{i}]:1")
        for _ in range(2):
            assert limit.allowed(source)
            limit.failed(source)
    assert subnet_of("192.0.2.1") is None and subnet_of("::ffff:192.0.2.1") is None
