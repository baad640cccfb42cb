"""Nodes that refuse the client's AUTH are not asked again until the deadline; nodes that
are dead, or too busy to check the credentials, are (client.api ``_retry_loop``).

Every client here has a deadline of an hour: a call that waited for it instead of
failing at once would run into the test's own timeout (setup.cfg), so no test times
anything itself.
"""

from __future__ import annotations

import pytest
import trio
from fake_node import CLOSE, WRONGPASS, FakeNode, Then, closed_port

from client import Client, CredentialsRefused, connect
from client.format import Output
from client.repl import Repl
from client.security import Security
from client.sync import SyncClient

HOUR = 3600.0
NOAUTH = b"-NOAUTH Authentication required.\r\n"
FULL = b"-ERR max number of clients reached\r\n"
THROTTLED = b"-ERR too many failed authentications from this address; retry in 1 s\r\n"


def client(*addrs: str, sessions: bool = False) -> Client:
    return connect(list(addrs), timeout=HOUR, backoff_base=0.001, backoff_cap=0.002,
                   eager=False, sessions=sessions, username="app", password="pw")


@pytest.mark.parametrize("refusal", [WRONGPASS, NOAUTH], ids=["wrongpass", "noauth"])
@pytest.mark.parametrize(("sessions", "command"), [
    (False, ("GET", "k")),
    (True, ("SET", "k", "v")),  # (the session's RAFT SESSION OPEN gives up at once too)
])
async def test_refused_credentials_fail_the_call_at_once(
        nursery: trio.Nursery, refusal: bytes, sessions: bool,
        command: tuple[str, ...]) -> None:
    node = FakeNode(default=refusal)
    # A dead endpoint beside it changes nothing: a live node said no.
    async with client(closed_port(), await node.serve(nursery), sessions=sessions) as kv:
        with pytest.raises(CredentialsRefused, match=r"AUTH failed: (WRONGPASS|NOAUTH)"):
            await kv.execute(*command)
    assert node.seen and all(cmd == [b"AUTH", b"app", b"pw"] for cmd in node.seen)
    assert len(node.seen) == (2 if sessions else 1)  # one round each, never repeated


@pytest.mark.parametrize("first", [CLOSE, FULL, THROTTLED], ids=["lost", "full", "throttled"])
async def test_a_node_lost_or_busy_during_auth_is_asked_again(
        nursery: trio.Nursery, first: bytes | str) -> None:
    """Every round fails (one endpoint is dead, the other drops the connection during
    AUTH or cannot check it now): a connection failure, asked again until the deadline.
    Failing such a call at once too would make this one raise ConnectionFailed."""
    node = FakeNode([first, first, b"+OK\r\n", b"$1\r\n1\r\n"])
    async with client(closed_port(), await node.serve(nursery)) as kv:
        assert await kv.get("k") == b"1"
    assert node.seen == [[b"AUTH", b"app", b"pw"]] * 3 + [[b"GET", b"k"]]


async def test_the_repl_falls_back_from_a_refused_typed_auth_at_once(
        nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]) -> None:
    """attack23 with an hour's --timeout: the typed AUTH's password no longer works, so
    RESET goes out with the command line's credentials (none) at once."""
    node = FakeNode([Then(b"+OK\r\n", CLOSE), b"+RESET\r\n"])
    addr = await node.serve(nursery)
    kv = SyncClient([addr], timeout=HOUR, eager=False)
    try:
        repl = Repl(kv, Output(), interactive=False)
        await trio.to_thread.run_sync(repl.handle, "AUTH app oldpw")
        await node.closed.wait()  # the node went away; on its return, oldpw is refused
        node.refused_passwords.add(b"oldpw")
        assert kv.client.security == Security(username=b"app", password=b"oldpw")
        await trio.to_thread.run_sync(repl.handle, "RESET")
    finally:
        await trio.to_thread.run_sync(kv.close)
    assert node.seen == [[b"AUTH", b"app", b"oldpw"], [b"AUTH", b"app", b"oldpw"],
                         [b"RESET"]]
    assert kv.client.security is None
    assert capsys.readouterr().out.splitlines() == ["OK", "RESET"]
