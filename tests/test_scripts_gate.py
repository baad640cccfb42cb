"""Lua scripts are on by default (each is bounded, kv/scripts.py) and refused, inside MULTI
too, when the node runs with --no-scripts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest
from click.testing import CliRunner

import raftkv.serve
from raftkv.cli import main
from raftkv.node.settings import NodeSettings
from raftkv.server.acl import AccessControl
from raftkv.server.commands import SCRIPTS_DISABLED, execute
from raftkv.server.connection import Connection
from raftkv.server.transaction import multi
from wire.reply import ErrorReply


def node(enable: bool) -> SimpleNamespace:
    submitted: list[list[bytes]] = []
    return SimpleNamespace(
        id=1, settings=SimpleNamespace(enable_scripts=enable, max_request_bytes=1 << 20),
        submit=lambda args: submitted.append(args) or SimpleNamespace(value="proposed"),
        submitted=submitted, client_server=SimpleNamespace(acl=AccessControl.configure()),
    )


@pytest.mark.parametrize("args", [[b"EVAL", b"return 1", b"0"], [b"evalsha", b"ab" * 20, b"0"],
                                  [b"EVAL_RO", b"return 1", b"0"], [b"SCRIPT", b"LOAD", b"x"]])
def test_script_commands_are_refused_unless_enabled(args: list[bytes]) -> None:
    off = node(False)
    reply = execute(off, Connection(1, "127.0.0.1:1", user="default"), args).value
    assert reply == ErrorReply(SCRIPTS_DISABLED) and off.submitted == []
    on = node(True)
    execute(on, Connection(1, "127.0.0.1:1", user="default"), args)
    assert on.submitted == [args]


def test_a_script_queued_in_multi_aborts_the_transaction() -> None:
    conn = Connection(1, "127.0.0.1:1", user="default")
    multi(conn.tx)
    reply = execute(node(False), conn, [b"EVAL", b"return 1", b"0"]).value
    assert isinstance(reply, ErrorReply) and conn.tx.dirty


def test_scripts_are_on_by_default_and_no_scripts_turns_them_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default configuration runs scripts (as Redis); --no-scripts, the environment
    variable or the config file key refuse them."""
    monkeypatch.delenv("RAFTKV_ENABLE_SCRIPTS", raising=False)
    seen: list[NodeSettings] = []
    monkeypatch.setattr(raftkv.serve, "run_node", seen.append)
    conf = tmp_path / "raftkv.toml"
    conf.write_text("enable-scripts = false\n")
    for args, env, expected in (([], {}, True), (["--no-scripts"], {}, False),
                                ([], {"RAFTKV_ENABLE_SCRIPTS": "0"}, False),
                                (["--config", str(conf)], {}, False),
                                (["--config", str(conf), "--enable-scripts"], {}, True)):
        base = ["--id", "1", "--data-dir", str(tmp_path / "d"), "--peer-addr",
                "127.0.0.1:7101", "--cluster", "1=127.0.0.1:7101"]
        result = CliRunner().invoke(main, ["serve", *base, *args], env=env,
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert seen.pop().enable_scripts is expected, (args, env)
    assert attrs.fields(NodeSettings).enable_scripts.default is True
