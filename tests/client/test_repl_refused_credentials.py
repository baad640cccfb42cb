"""The REPL after the nodes start refusing a typed AUTH's credentials (attack23): it falls
back to the command line's, lets AUTH/RESET through, and says so once for other commands,
which it does not re-send as another user."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from client.errors import CredentialsRefused
from client.format import Output
from client.repl import Repl
from client.security import Security

INITIAL = Security(username="ops", password="opspw")
STALE = Security(username=b"app", password=b"oldpw")


@attrs.define
class FakeClient:
    security: Security | None


@attrs.define
class FakeKv:
    """Refuses to connect with STALE; records (credentials, command) of what it sent."""

    client: FakeClient
    sent: list[tuple[Any, list[bytes]]] = attrs.Factory(list)
    current_endpoint: str = "127.0.0.1:7001"

    def execute(self, *args: bytes) -> Any:
        if self.client.security == STALE:
            raise CredentialsRefused("could not reach any node: x: AUTH failed: WRONGPASS")
        self.sent.append((self.client.security, list(args)))
        return b"RESET" if args[0].lower() == b"reset" else b"OK"


def _repl(security: Security | None) -> tuple[Repl, FakeKv]:
    kv = FakeKv(FakeClient(INITIAL))
    repl = Repl(kv, Output(), interactive=False)  # type: ignore[arg-type]
    kv.client.security = security
    return repl, kv


@pytest.mark.parametrize("line", ["RESET", "AUTH app newpw", "HELLO 2 AUTH app newpw"])
def test_a_command_setting_credentials_goes_through(line: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    repl, kv = _repl(STALE)
    repl.handle(line)
    assert kv.sent == [(INITIAL, line.encode().split())]
    out = capsys.readouterr()
    assert "refuse" not in out.err and "could not reach" not in out.out
    expected = INITIAL if line == "RESET" else attrs.evolve(INITIAL, username=b"app",
                                                            password=b"newpw")
    assert kv.client.security == expected


def test_another_command_is_not_resent_and_the_user_is_told_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    repl, kv = _repl(STALE)
    repl.handle("GET app:k")
    out = capsys.readouterr()
    assert kv.sent == []
    assert "could not reach any node" in out.out and "not sent" in out.err
    repl.handle("GET app:k")  # now as the command line's user, without the note again
    out = capsys.readouterr()
    assert kv.sent == [(INITIAL, [b"GET", b"app:k"])] and out.err == ""


def test_the_command_lines_own_credentials_refused_are_just_reported(
        capsys: pytest.CaptureFixture[str]) -> None:
    repl, kv = _repl(INITIAL)
    kv.client.security = STALE
    repl.initial_security = STALE
    repl.handle("RESET")
    out = capsys.readouterr()
    assert kv.sent == [] and "could not reach any node" in out.out and out.err == ""
