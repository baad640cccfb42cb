"""A wrong password is reported as "connection lost during AUTH (a TLS port? try --tls)"
(attack22).

The node answers ``AUTH`` with ``-WRONGPASS invalid username-password pair or user is
disabled.`` and keeps the connection open. ``check_auth_reply`` raises ``HandshakeFailed``
for it, but ``HandshakeFailed`` is a ``ConnectionError``, so ``Connection.open_host``'s
``except TRANSPORT_ERRORS`` (meant for a connection that drops during AUTH, as a TLS port
does to plain text) catches it and wraps it. Live::

    $ raftkv-cli -e 127.0.0.22:7221 --user app --pass wrong GET k
    Could not connect to RaftKV: 127.0.0.22:7221: connection lost during AUTH (a TLS
    port? try --tls): WRONGPASS invalid username-password pair or user is disabled.

Nothing was lost and the port is plain text: the hint sends the user after TLS flags
while the password is what is wrong (on a cluster that serves TLS on another port,
``--tls`` then fails its handshake, a second wrong lead).

Right: the node's refusal as it is (redis-cli: ``AUTH failed: WRONGPASS invalid
username-password pair or user is disabled.``), still a ConnectionError so the client
tries the next endpoint, as client/security.py intends; the TLS hint only for a
connection that really dropped.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio

from client.connection import Connection
from client.security import HandshakeFailed, Security
from wire.resp import CommandParser

WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


async def _refuse_auth(stream: trio.SocketStream) -> None:
    """Answer every command WRONGPASS, as a node does to a wrong AUTH; keep the connection."""
    parser = CommandParser()
    async with stream:
        while data := await stream.receive_some(65536):
            parser.feed(data)
            for _ in parser:
                await stream.send_all(WRONGPASS)


async def test_wrong_password_is_not_reported_as_a_lost_connection(
        nursery: trio.Nursery) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, _refuse_auth, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(HandshakeFailed) as caught:
        await Connection.open_host("127.0.0.1", port,
                                   security=Security(username="app", password="wrong"))
    message = str(caught.value)
    assert "WRONGPASS" in message
    assert "connection lost" not in message, message
    assert "TLS" not in message, message
