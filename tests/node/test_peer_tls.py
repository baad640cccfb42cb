"""Mutual TLS on peer links (issue 13), with certificates made by the test (raftkv.certs):
transports over loopback, a peer with a certificate from another CA, plain-text and silent
peers on a TLS port."""

from __future__ import annotations

import ssl
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

from raftkv import certs
from raftkv.node.tls import PeerTLS, TLSConfigError, peer_tls
from wire.frames import encode_frame
from wire.hello import PROTOCOL_VERSION, Hello
from wire.raft import RequestVote
from wire.record import encode

FAST_HELLO = attrs.evolve(LIMITS, hello_timeout=0.5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    good = tmp_path_factory.mktemp("good")
    rogue = tmp_path_factory.mktemp("rogue")
    certs.create(good)
    certs.create(rogue)
    return {"good": good, "rogue": rogue}


def tls_of(d: Path) -> PeerTLS:
    return peer_tls(str(d / "node.crt"), str(d / "node.key"), str(d / "ca.crt"))


async def test_tls_peers_exchange_both_ways(nursery, pki) -> None:
    tls = tls_of(pki["good"])
    with trio.fail_after(10):
        a = await start(nursery, 1, tls=tls, secret=b"k" * 32)
        b = await start(nursery, 2, {1: a.addr}, tls=tls, secret=b"k" * 32)
        a.t.update_peers({2: b.addr})
        b.t.send(Note(2, 1, 1))
        assert await a.inbox.receive() == Note(2, 1, 1)
        a.t.send(Note(1, 2, 2))
        assert await b.inbox.receive() == Note(1, 2, 2)
    assert a.t.tls_failures == b.t.tls_failures == 0


async def test_a_peer_of_another_ca_never_completes_the_handshake(
    nursery, warnings, pki  # noqa: F811
) -> None:
    """Both directions: the rogue node dials the good one and the good one dials it; no
    link comes up, nothing is delivered, failures are counted and logged with the reason."""
    with trio.fail_after(10):
        a = await start(nursery, 1, tls=tls_of(pki["good"]), limits=FAST_HELLO)
        rogue = await start(nursery, 2, {1: a.addr}, tls=tls_of(pki["rogue"]),
                            limits=FAST_HELLO)
        a.t.update_peers({2: rogue.addr})
        for i in range(5):
            rogue.t.send(Note(2, 1, i))
        await a.t.wait_until(lambda: a.t.tls_failures >= 4)
        await rogue.t.wait_until(lambda: rogue.t.tls_failures >= 4)
    assert a.t.stats()[2].dial_failures > 0
    assert not a.t.stats()[2].connected and not a.t.stats()[2].inbound
    assert a.inbox.statistics().current_buffer_used == 0
    assert rogue.inbox.statistics().current_buffer_used == 0
    failed = logged(warnings, "peer TLS handshake failed")
    # The dialer checks the listener's certificate first, and hangs up.
    assert any("addr" in f and "CERTIFICATE_VERIFY_FAILED" in f["reason"] for f in failed)
    assert any("remote" in f for f in failed), failed


async def test_a_dialer_with_a_rogue_certificate_is_refused_by_the_listener(
    nursery, warnings, pki  # noqa: F811
) -> None:
    """The dialer trusts our CA (so it accepts our certificate) but presents one signed by
    another CA: our side of the handshake fails, its Hello and messages never arrive."""
    good = pki["good"]
    sneaky = peer_tls(str(pki["rogue"] / "node.crt"), str(pki["rogue"] / "node.key"),
                      str(good / "ca.crt"))
    with trio.fail_after(10):
        a = await start(nursery, 1, {2: "127.0.0.1:1"}, tls=tls_of(good), limits=FAST_HELLO)
        rogue = await start(nursery, 2, {1: a.addr}, tls=sneaky, limits=FAST_HELLO)
        for i in range(5):
            rogue.t.send(Note(2, 1, i))
        await a.t.wait_until(lambda: a.t.tls_failures >= 3)
    assert not a.t.stats()[2].inbound
    assert a.inbox.statistics().current_buffer_used == 0
    failed = logged(warnings, "peer TLS handshake failed")
    assert any("remote" in f and "CERTIFICATE_VERIFY_FAILED" in f["reason"]
               for f in failed), failed


async def test_plain_text_and_silent_peers_on_a_tls_port(nursery, warnings, pki) -> None:  # noqa: F811
    """A plain Hello (then a RequestVote) is not TLS: closed, nothing delivered. A peer that
    connects and says nothing is cut at the handshake timeout. The established TLS link
    keeps delivering."""
    tls = tls_of(pki["good"])
    with trio.fail_after(10):
        a = await start(nursery, 1, tls=tls, limits=FAST_HELLO)
        nine = await start(nursery, 9, {1: a.addr}, tls=tls)
        a.t.update_peers({9: nine.addr})
        await a.t.wait_until(lambda: a.t.stats()[9].inbound)
        # Silent first: failures are logged once per 10 s per address (the rest counted).
        silent = await RawPeer.connect(a.port)
        assert await silent.read_until_closed() == b""  # at hello_timeout
        plain = await RawPeer.connect(a.port)
        await plain.stream.send_all(encode_frame(encode(
            Hello(PROTOCOL_VERSION, "test-cluster", 9, "127.0.0.1:1", "c")))
            + encode_frame(encode(RequestVote(2**40, 9, 1, 0, 0))))
        assert await plain.read_until_closed() == b""
        nine.t.send(Note(9, 1, 3))
        assert await a.inbox.receive() == Note(9, 1, 3)
    assert a.t.tls_failures >= 2
    reasons = [f["reason"] for f in logged(warnings, "peer TLS handshake failed")]
    assert "no TLS handshake within 0.5 s" in reasons, reasons
    assert a.t.stats()[9].inbound


def test_unloadable_files_are_named(tmp_path: Path, pki) -> None:
    good = pki["good"]
    with pytest.raises(TLSConfigError, match="--peer-tls-ca"):
        peer_tls(str(good / "node.crt"), str(good / "node.key"), str(tmp_path / "none"))
    with pytest.raises(TLSConfigError, match="--peer-tls-key"):
        peer_tls(str(good / "node.crt"), str(pki["rogue"] / "node.key"), str(good / "ca.crt"))
    tls = tls_of(good)
    assert tls.server.verify_mode == tls.client.verify_mode == ssl.CERT_REQUIRED


def test_certs_create_refuses_to_overwrite_and_keeps_keys_private(pki) -> None:
    for stem in ("ca", "node", "client"):
        assert (pki["good"] / f"{stem}.key").stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        certs.create(pki["good"])
