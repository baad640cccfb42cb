"""Password guessing must not flood the node's log (attack3). Failures are logged at most
once per 10 s per host (README), but the connection close after the 10th failure was logged
at INFO every time: one client guessing 4,110 passwords/s (10 per connection) wrote 411
lines/s, 2,055 in 5 s, to a node's log."""

from __future__ import annotations

import logging

import pytest

from raftkv.server.acl import AccessControl
from raftkv.server.auth import MAX_AUTH_FAILURES, authenticate
from raftkv.server.client_port import Connection


def test_closing_guessers_is_logged_a_bounded_number_of_times(
        caplog: pytest.LogCaptureFixture) -> None:
    acl = AccessControl.configure(requirepass="s3cret")
    caplog.set_level(logging.INFO, logger="raftkv.auth")
    for n in range(200):
        conn = Connection(n, f"10.0.0.7:{10000 + n}")
        for _ in range(MAX_AUTH_FAILURES):
            authenticate(acl, conn, b"default", b"guess")
        assert conn.closing
    lines = [r for r in caplog.records if r.name == "raftkv.auth"]
    assert len(lines) <= 4, f"{len(lines)} log lines for 200 guessing connections from one host"
