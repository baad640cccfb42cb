"""attack17's rule for the other per-address log lines: a client (or ops port) peer that
fails its TLS handshake from a new address every time, as one machine can with its IPv6
/64, writes a bounded number of lines, not one per connection (the AUTH lines' fix in
raftkv/server/auth.py, applied to raftkv/server/client_tls.py and http_auth.py)."""

from __future__ import annotations

import logging
import socket
import ssl

import pytest
import trio

from raftkv.server.client_tls import LOG_LINES, ClientTLS
from raftkv.server.http_auth import MetricsSecurity


async def test_failed_handshakes_from_many_addresses_log_a_bounded_number_of_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="raftkv")
    tls = ClientTLS(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))  # (no certificate)
    for n in range(200):  # each from its own address of 2001:db8:17:17::/64
        ours, theirs = socket.socketpair()
        theirs.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not a TLS ClientHello
        theirs.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        assert await tls.accept(stream, f"[2001:db8:17:17::{n + 1:x}]:{20000 + n}") is None
    assert tls.failures == 200
    lines = [r for r in caplog.records if "handshake failed" in r.getMessage()]
    assert 1 <= len(lines) <= LOG_LINES, f"{len(lines)} lines for 200 failed handshakes"


def test_the_ops_port_throttle_is_capped_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="raftkv")
    security = MetricsSecurity()
    logged = sum(security.throttle.log(("auth", f"2001:db8:17:17::{n + 1:x}"), logging.WARNING,
                                       "metrics request unauthorized") for n in range(200))
    assert 1 <= logged <= 30
