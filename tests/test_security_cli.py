"""``raftkv serve`` protected mode and peer-security flags, ``raftkv certs create``
(click's runner; the node itself is never started: run_node is replaced)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import raftkv.serve
from raftkv.cli import main
from raftkv.node.security import exposed_addresses, is_loopback_host


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(raftkv.serve, "run_node", calls.append)
    return calls


def serve(tmp_path: Path, *args: str) -> Any:
    base = ["serve", "--id", "1", "--cluster", "1=127.0.0.1:7101",
            "--data-dir", str(tmp_path / "d")]
    return CliRunner().invoke(main, base + list(args), env={})


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.0.0.9", "::1", "[::1]", "localhost"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "node1", "example.com"):
        assert not is_loopback_host(host), host
    assert exposed_addresses({"--peer-addr": "0.0.0.0:1", "--client-addr": "127.0.0.1:2"}) == [
        ("--peer-addr", "0.0.0.0:1")]


def test_loopback_needs_nothing(tmp_path: Path, started: list[Any]) -> None:
    result = serve(tmp_path)
    assert result.exit_code == 0, result.output
    assert started and started[0].cluster_id == "" and not started[0].insecure


@pytest.mark.parametrize("flag", ["--client-addr", "--peer-addr"])
def test_an_exposed_address_without_peer_auth_is_refused(
    tmp_path: Path, started: list[Any], flag: str
) -> None:
    result = serve(tmp_path, flag, "0.0.0.0:7101" if flag == "--peer-addr" else "0.0.0.0:7001")
    assert result.exit_code == 2 and not started
    out = result.output
    assert f"{flag} 0.0.0.0" in out and "--peer-secret-file" in out and "--peer-tls-cert" in out
    assert "--insecure" in out


def test_insecure_or_a_secret_allows_an_exposed_address(tmp_path: Path,
                                                        started: list[Any]) -> None:
    result = serve(tmp_path, "--peer-addr", "0.0.0.0:7101", "--insecure")
    assert result.exit_code == 0, result.output
    assert "WARNING: --insecure" in result.output
    secret = tmp_path / "secret"
    secret.write_text("x" * 32)
    secret.chmod(0o600)
    result = serve(tmp_path, "--peer-addr", "0.0.0.0:7101", "--peer-secret-file", str(secret))
    assert result.exit_code == 0, result.output
    assert started[-1].peer_secret_file == str(secret)


def test_bad_secret_files_and_partial_tls_flags_are_refused(tmp_path: Path,
                                                           started: list[Any]) -> None:
    short = tmp_path / "short"
    short.write_text("abc")
    result = serve(tmp_path, "--peer-secret-file", str(short))
    assert result.exit_code == 2 and "at least 16" in result.output
    result = serve(tmp_path, "--peer-tls-cert", "x.crt")
    assert result.exit_code == 2
    assert "missing --peer-tls-key, --peer-tls-ca" in result.output
    assert not started


def test_certs_create_then_serve_with_them(tmp_path: Path, started: list[Any]) -> None:
    out = tmp_path / "certs"
    result = CliRunner().invoke(main, ["certs", "create", "--out", str(out),
                                       "--hosts", "127.0.0.1,node1"])
    assert result.exit_code == 0, result.output
    assert "--peer-tls-cert" in result.output
    cert = ssl._ssl._test_decode_cert(str(out / "node.crt"))  # type: ignore[attr-defined]
    assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
    assert ("DNS", "node1") in cert["subjectAltName"]
    tls = ["--peer-tls-cert", str(out / "node.crt"), "--peer-tls-key", str(out / "node.key"),
           "--peer-tls-ca", str(out / "ca.crt")]
    result = serve(tmp_path, "--peer-addr", "0.0.0.0:7101", *tls)
    assert result.exit_code == 0, result.output
    # Again into the same directory: refused, nothing overwritten.
    again = CliRunner().invoke(main, ["certs", "create", "--out", str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    wrong = [*tls[:3], str(out / "client.key"), *tls[4:]]  # key of another cert
    result = serve(tmp_path, *wrong)
    assert result.exit_code == 2 and "--peer-tls-key" in result.output
