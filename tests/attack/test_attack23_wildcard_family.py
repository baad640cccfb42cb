"""attack23: ``serve``'s own-entry check (``check_own_entry``, session 11) lets a wildcard
``--peer-addr`` of the other address family through, though the node then cannot be
reached at its ``--cluster`` entry.

The check takes a wildcard listen address as "every address, the entry's among them" and
compares only the port. But trio's ``open_tcp_listeners`` binds ``[::]`` with
``IPV6_V6ONLY`` (IPv6 only) and ``0.0.0.0`` is IPv4 only: ``--peer-addr [::]:7101`` with
``--cluster 1=127.0.0.1:7101,...`` starts, listens on IPv6 only, and every peer dialing
127.0.0.1:7101 is refused; the node is cut off although the start was "checked". The
reverse (``0.0.0.0`` for an ``[::1]`` entry) is the same.

Right: a wildcard matches an entry of its own family only (``0.0.0.0`` an IPv4 literal,
``[::]`` an IPv6 literal; a hostname cannot be judged and stays allowed); the other family
is the same one-line usage error as any other mismatch.
"""

from __future__ import annotations

import socket

import pytest
import trio

from raftkv.node.settings import check_own_entry

pytestmark = pytest.mark.timeout(30)


async def test_a_v6_wildcard_listener_is_not_reachable_at_a_v4_entry() -> None:
    """The premise, on this machine: what ``[::]`` listens on, 127.0.0.1 does not reach."""
    if not socket.has_ipv6:
        pytest.fail("no IPv6 on this machine: the premise cannot be shown")
    listeners = await trio.open_tcp_listeners(0, host="::")
    try:
        port = listeners[0].socket.getsockname()[1]
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)
    finally:
        for listener in listeners:
            await listener.aclose()


@pytest.mark.parametrize(("entry", "listen"), [
    ("127.0.0.1:7101", "[::]:7101"),
    ("[::1]:7101", "0.0.0.0:7101"),
])
def test_a_wildcard_of_the_other_family_is_refused(entry: str, listen: str) -> None:
    with pytest.raises(ValueError, match="differs from node 1's entry"):
        check_own_entry(1, {1: entry, 2: "127.0.0.1:7102"}, listen)


def test_a_wildcard_of_the_entrys_family_still_starts() -> None:
    check_own_entry(1, {1: "127.0.0.1:7101"}, "0.0.0.0:7101")
    check_own_entry(1, {1: "[::1]:7101"}, "[::]:7101")
