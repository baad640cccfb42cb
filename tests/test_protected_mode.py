"""Protected mode, client side (raftkv.server.protected_mode): a client address beyond
loopback needs client authentication or --insecure; the refusal names the flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import raftkv.serve
from raftkv.cli import main


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(raftkv.serve, "run_node", calls.append)
    return calls


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    secret = tmp_path / "secret"
    secret.write_text("x" * 32)
    secret.chmod(0o600)
    base = ["serve", "--id", "1", "--cluster", "1=127.0.0.1:7101", "--data-dir",
            str(tmp_path / "d"), "--client-addr", "0.0.0.0:7001",
            "--peer-secret-file", str(secret)]
    return CliRunner().invoke(main, base + list(args), env=env or {})


def test_an_exposed_client_port_needs_client_auth(tmp_path: Path, started: list[Any]) -> None:
    result = serve(tmp_path)
    assert result.exit_code == 2 and not started
    assert "--client-addr 0.0.0.0:7001" in result.output
    assert "--requirepass" in result.output and "--acl-file" in result.output
    assert "--insecure" in result.output


def test_an_acl_file_that_leaves_default_open_is_not_auth(tmp_path: Path,
                                                         started: list[Any]) -> None:
    acl = tmp_path / "users.acl"
    acl.write_text("user admin on >pw ~* +@all\n")
    result = serve(tmp_path, "--acl-file", str(acl))
    assert result.exit_code == 2 and "default user of --acl-file is on and nopass" in (
        result.output)
    acl.write_text("user admin on >pw ~* +@all\nuser default off\n")
    result = serve(tmp_path, "--acl-file", str(acl))
    assert result.exit_code == 0, result.output


def test_requirepass_or_insecure(tmp_path: Path, started: list[Any]) -> None:
    assert serve(tmp_path, env={"RAFTKV_REQUIREPASS": "pw"}).exit_code == 0
    result = serve(tmp_path, "--insecure")
    assert result.exit_code == 0 and "WARNING: --insecure: --client-addr" in result.output
    assert len(started) == 2
