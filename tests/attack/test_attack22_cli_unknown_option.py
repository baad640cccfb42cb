"""raftkv-cli sends a mistyped option, and every option after it, to a node as a command:
with ``--pass`` among them, the password goes out in plain text and is printed back
(attack22).

``raftkv-cli`` parses with ``ignore_unknown_options`` (so ``INCRBY n -5`` keeps its ``-5``)
and ``allow_interspersed_args=False``; an unknown option *before* the command is therefore
taken as the command's first word, and everything after it as its arguments. Live, against
a node with an ACL file::

    $ raftkv-cli -e 127.0.0.22:7221 --tls-ca ca.pem --user admin --pass s3cret GET k
    ERR unknown command '--tls-ca', with args beginning with: 'ca.pem' '--user' 'admin'
    '--pass' 's3cret' 'GET' 'k'

The user asked for TLS (the flag is ``--cacert``): instead the CLI connected in plain
text, without AUTH, sent the password over the wire as a command argument, and printed it
on the terminal (or into a CI log). ``--password s3cret`` (redis-cli's spelling is ``-a``,
``--pass``), ``--verbose`` or ``--endpoint`` do the same: the typo is never reported.

Right: redis-cli's behaviour: ``Unrecognized option or bad number of args for:
'--tls-ca'``, a usage error (exit 2) before any connection; no Redis command starts with
``-``, so a first word that does is a mistyped option. Arguments after the command word
(``INCRBY n -5``) stay arguments.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from client import cli as cli_module
from client.cli import main


class _Connected(Exception):
    pass


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every connection the CLI makes (and make none)."""
    calls: list[Any] = []

    def fake_connect(eps: list[str], timeout: float) -> Any:
        calls.append(eps)
        raise _Connected

    monkeypatch.setattr(cli_module, "_connect", fake_connect)
    return calls


@pytest.mark.parametrize("typo", [
    ["--tls-ca", "ca.pem"],
    ["--password", "s3cret"],
    ["--verbose"],
])
def test_mistyped_option_is_a_usage_error(connects: list[Any], typo: list[str]) -> None:
    result = CliRunner().invoke(main, ["-e", "127.0.0.1:1", *typo, "--user", "admin",
                                       "--pass", "s3cret", "GET", "k"])
    assert connects == [], f"a mistyped {typo[0]} was sent to a node as a command"
    assert result.exit_code == 2, result.output
    assert typo[0] in result.output  # the usage error names the option
    assert "s3cret" not in result.output


def test_option_like_arguments_after_the_command_stay(connects: list[Any]) -> None:
    """The reason for ignore_unknown_options keeps working: ``INCRBY n -5``."""
    result = CliRunner().invoke(main, ["-e", "127.0.0.1:1", "INCRBY", "n", "-5"])
    assert connects == [["127.0.0.1:1"]]
    assert isinstance(result.exception, _Connected)
