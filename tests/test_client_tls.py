"""Client-port TLS settings (raftkv.server.client_tls) and their flags: what cannot work
is refused before the node starts, naming the flag."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import raftkv.node.run
from raftkv import certs
from raftkv.cli import main
from raftkv.server.client_tls import ClientTLSError, client_tls_context, failure_reason


def test_contexts(tmp_path: Path) -> None:
    certs.create(tmp_path)
    crt, key, ca = (str(tmp_path / n) for n in ("node.crt", "node.key", "ca.crt"))
    ctx = client_tls_context(crt, key)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_tls_context(crt, key, ca, client_auth=True).verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ClientTLSError, match="missing --tls-key"):
        client_tls_context(crt, "")
    with pytest.raises(ClientTLSError, match="--tls-client-auth needs --tls-ca"):
        client_tls_context(crt, key, "", client_auth=True)
    with pytest.raises(ClientTLSError, match="cannot load --tls-cert"):
        client_tls_context(ca, key)  # the key does not match
    with pytest.raises(ClientTLSError, match="cannot load --tls-ca"):
        client_tls_context(crt, key, str(tmp_path / "nope"))


def test_failure_reasons() -> None:
    plain = ssl.SSLError(1, "wrong version")
    plain.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
    assert "plain text" in failure_reason(plain)
    assert "no handshake within" in failure_reason(None)


def test_serve_checks_the_tls_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(raftkv.node.run, "run_node", started.append)
    certs.create(tmp_path / "c")
    base = ["serve", "--id", "1", "--cluster", "1=127.0.0.1:7101",
            "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(main, [*base, "--tls-cert", str(tmp_path / "c/node.crt")],
                                env={})
    assert result.exit_code == 2 and "missing --tls-key" in result.output and not started
    result = CliRunner().invoke(main, [*base, "--tls-client-auth"], env={})
    assert result.exit_code == 2 and not started
    good = ["--tls-cert", str(tmp_path / "c/node.crt"), "--tls-key", str(tmp_path / "c/node.key")]
    result = CliRunner().invoke(main, [*base, *good], env={})
    assert result.exit_code == 0, result.output
    assert started[0].tls_cert.endswith("node.crt") and not started[0].tls_client_auth
