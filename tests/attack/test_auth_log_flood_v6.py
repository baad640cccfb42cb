"""attack17: password guessing from many addresses floods the node's log again.

attack3 bounded the lines a guesser writes to one per 10 s per host ("client failed
authentication", "closing ... after failed AUTHs", "refusing AUTH"). Since attack16 a host
is a whole address, IPv6 included, and one machine holds a /64 (2^64 addresses; a cloud
VM is routinely given one). A guesser that takes a new address of its /64 for every
connection (it must anyway: each address has only ``auth_limit.BURST`` failures) writes
a line per connection: at attack14's 13,390 guesses a second, ~1,300 lines a second.
The throttle's key table is bounded (1,024), the log is not. Live (one node at the default
log level, one process cycling 4,826 source addresses of 127.0.0.0/8 for 5 s, plus 5 s
from one address): 1,967 "client failed authentication" WARNING lines, ~390 a second."""

from __future__ import annotations

import logging

import pytest

from raftkv.server.acl import AccessControl
from raftkv.server.auth import MAX_AUTH_FAILURES, authenticate
from raftkv.server.client_port import Connection


def test_guessing_from_one_v6_subnet_is_logged_a_bounded_number_of_times(
        caplog: pytest.LogCaptureFixture) -> None:
    acl = AccessControl.configure(requirepass="s3cret")
    caplog.set_level(logging.INFO, logger="raftkv.auth")
    for n in range(300):  # one connection per address of 2001:db8:17:17::/64
        conn = Connection(n, f"[2001:db8:17:17::{n + 1:x}]:{20000 + n}")
        for _ in range(MAX_AUTH_FAILURES):
            authenticate(acl, conn, b"default", b"guess")
        assert conn.closing
    lines = [r for r in caplog.records if r.name == "raftkv.auth"]
    assert len(lines) <= 10, (f"{len(lines)} log lines for 300 guessing connections from "
                              "one /64 (3,000 guesses)")
