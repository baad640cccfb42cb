"""Peer authentication by a shared secret (issue 13): transports over loopback and raw
sockets that know the Hello format but not the secret. Waits are on transport state and
channels, bounded by ``trio.fail_after``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import attrs
import pytest
import trio
from test_transport import (  # noqa: F401 (pytest imports tests/node/ as top level)
    LIMITS,
    Note,
    RawPeer,
    logged,
    start,
    warnings,
)

from raftkv.node import peer_auth
from raftkv.node.peer_auth import SecretFileError, ensure_secret_file, load_secret
from wire.frames import encode_frame
from wire.hello import PROTOCOL_VERSION, Hello, Proof, Refused
from wire.raft import RequestVote
from wire.record import encode

SECRET = b"s" * 32
CLUSTER = "test-cluster"
FAST_HELLO = attrs.evolve(LIMITS, hello_timeout=0.5)


async def raw_hello(peer: RawPeer, node_id: int, nonce: bytes) -> object:
    await peer.stream.send_all(encode_frame(encode(
        Hello(PROTOCOL_VERSION, CLUSTER, node_id, "127.0.0.1:1", "client", nonce))))
    return await peer.next()


async def test_peers_with_the_same_secret_exchange_both_ways(nursery) -> None:
    with trio.fail_after(10):
        a = await start(nursery, 1, secret=SECRET)
        b = await start(nursery, 2, {1: a.addr}, secret=SECRET)
        a.t.update_peers({2: b.addr})
        b.t.send(Note(2, 1, 1))
        assert await a.inbox.receive() == Note(2, 1, 1)
        a.t.send(Note(1, 2, 2))
        assert await b.inbox.receive() == Note(1, 2, 2)
    assert a.t.auth_failures == b.t.auth_failures == 0


@pytest.mark.parametrize("b_secret", [b"t" * 32, None], ids=["wrong-secret", "no-secret"])
async def test_a_peer_without_the_secret_never_links_or_delivers(
    nursery, warnings, b_secret: bytes | None  # noqa: F811
) -> None:
    """Both directions: b dials a (b's outbound) and a dials b; neither link comes up, no
    message is delivered, and each failure is counted and logged with the reason."""
    with trio.fail_after(10):
        a = await start(nursery, 1, secret=SECRET, limits=FAST_HELLO)
        b = await start(nursery, 2, {1: a.addr}, secret=b_secret, limits=FAST_HELLO)
        a.t.update_peers({2: b.addr})
        await a.t.wait_until(lambda: a.t.stats()[2].dial_failures >= 3)
        await b.t.wait_until(lambda: b.t.stats()[1].dial_failures >= 3)
        for i in range(5):
            b.t.send(Note(2, 1, i))
            a.t.send(Note(1, 2, i))
        await a.t.wait_until(lambda: a.t.stats()[2].dial_failures >= 6)
    assert not a.t.stats()[2].connected and not a.t.stats()[2].inbound
    assert not b.t.stats()[1].connected and not b.t.stats()[1].inbound
    assert a.inbox.statistics().current_buffer_used == 0
    assert b.inbox.statistics().current_buffer_used == 0
    if b_secret is None:
        assert a.t.refused_inbound > 0 and b.t.refused_inbound > 0
        reasons = [f["reason"] for f in logged(warnings, "refused peer")]
        assert any("--peer-secret-file" in r for r in reasons), reasons
    else:
        assert a.t.auth_failures > 0 and b.t.auth_failures > 0
        failed = logged(warnings, "peer failed authentication")
        # The dialer sees the listener's wrong proof and hangs up before sending its own.
        assert any("addr" in f and "wrong proof" in f["reason"] for f in failed), failed
        assert any("remote" in f and "before its Proof" in f["reason"] for f in failed)


async def test_a_raw_peer_that_knows_the_format_but_not_the_secret(
    nursery, warnings  # noqa: F811
) -> None:
    """It passes the Hello as member 9, gets the listener's Hello and Proof, then sends a
    forged Proof, a reflected one (the listener's own), or none, followed by a RequestVote
    at a high term: the connection is closed, nothing is delivered, and the authenticated
    link of the real member 9 stays up and keeps delivering."""
    with trio.fail_after(15):
        a = await start(nursery, 1, secret=SECRET, limits=FAST_HELLO)
        nine = await start(nursery, 9, {1: a.addr}, secret=SECRET)
        a.t.update_peers({9: nine.addr})
        await a.t.wait_until(lambda: a.t.stats()[9].inbound)
        vote = encode_frame(encode(RequestVote(2**40, 9, 1, 0, 0)))
        # "none" first: failures are logged once per 10 s per address (the rest counted).
        for attack in ("none", "forged", "reflected", "skip-proof"):
            raw = await RawPeer.connect(a.port)
            reply = await raw_hello(raw, 9, os.urandom(32))
            assert isinstance(reply, Hello) and len(reply.nonce) == 32
            listener_proof = await raw.next()
            assert isinstance(listener_proof, Proof)
            if attack == "forged":
                await raw.stream.send_all(encode_frame(encode(Proof(b"\0" * 32))) + vote)
            elif attack == "reflected":
                await raw.stream.send_all(encode_frame(encode(listener_proof)) + vote)
            elif attack == "skip-proof":
                await raw.stream.send_all(vote)
            if attack == "none":
                assert await raw.read_until_closed() == b""  # at hello_timeout
            else:
                assert await raw.read_until_closed() == b""
        assert a.t.auth_failures == 4
        reasons = [f["reason"] for f in logged(warnings, "peer failed authentication")]
        assert "no Proof within 0.5 s" in reasons, reasons
        # A Hello without a nonce is refused outright.
        bare = await RawPeer.connect(a.port)
        assert isinstance(await raw_hello(bare, 9, b""), Refused)
        assert a.inbox.statistics().current_buffer_used == 0
        assert a.t.stats()[9].inbound
        nine.t.send(Note(9, 1, 5))
        assert await a.inbox.receive() == Note(9, 1, 5)


def test_proofs_bind_role_nonces_id_and_cluster() -> None:
    d, n = b"d" * 32, b"n" * 32
    base = peer_auth.proof(SECRET, peer_auth.DIALER, d, n, 1, "c")
    assert peer_auth.verify(SECRET, base, peer_auth.DIALER, d, n, 1, "c")
    for other in (
        peer_auth.proof(SECRET, peer_auth.LISTENER, d, n, 1, "c"),
        peer_auth.proof(SECRET, peer_auth.DIALER, n, d, 1, "c"),
        peer_auth.proof(SECRET, peer_auth.DIALER, d, n, 2, "c"),
        peer_auth.proof(SECRET, peer_auth.DIALER, d, n, 1, "c2"),
        peer_auth.proof(b"x" * 32, peer_auth.DIALER, d, n, 1, "c"),
    ):
        assert other != base
        assert not peer_auth.verify(SECRET, other, peer_auth.DIALER, d, n, 1, "c")


def test_secret_files(tmp_path: Path) -> None:
    made = ensure_secret_file(tmp_path / "peer-secret")
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    secret = load_secret(made)
    assert len(secret) == 64
    assert ensure_secret_file(made) == made and load_secret(made) == secret  # kept
    assert not peer_auth.loose_permissions(made)
    short = tmp_path / "short"
    short.write_text("too short\n")
    with pytest.raises(SecretFileError, match="at least 16"):
        load_secret(short)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(SecretFileError, match="over"):
        load_secret(big)
    with pytest.raises(SecretFileError, match="cannot read"):
        load_secret(tmp_path / "missing")
    short.write_text("  " + "k" * 20 + "\n")
    assert load_secret(short) == b"k" * 20
    os.chmod(short, 0o644)
    assert peer_auth.loose_permissions(short)


async def test_before_its_proof_a_connection_cannot_make_us_buffer_a_full_frame(
    nursery,
) -> None:
    """The small pre-handshake frame limit lasts until the Proof is checked: a stranger that
    passes the Hello and announces an 8 MiB frame is closed at the frame's header."""
    a = await start(nursery, 1, {9: "127.0.0.1:9"}, secret=SECRET,
                    limits=attrs.evolve(LIMITS, hello_timeout=30.0))
    with trio.fail_after(10):
        raw = await RawPeer.connect(a.port)
        assert isinstance(await raw_hello(raw, 9, os.urandom(32)), Hello)
        assert isinstance(await raw.next(), Proof)
        size = 8 * 1024 * 1024
        await raw.stream.send_all(size.to_bytes(4, "big") + b"\x00" * 1024)
        assert await raw.read_until_closed() == b""
    assert a.t.bad_connections == 1
