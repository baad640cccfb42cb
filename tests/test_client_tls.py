"""Client-port TLS settings (raftkv.server.client_tls) and their flags: what cannot work
is refused before the node starts, naming the flag."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import raftkv.serve
from client.cli import security_options
from client.security import from_env
from raftkv import certs
from raftkv.cli import main
from raftkv.local_cluster import banner
from raftkv.local_tls import prepare as prepare_tls
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
    expired = ssl.SSLCertVerificationError(1, "verify failed")
    expired.reason = "CERTIFICATE_VERIFY_FAILED"  # type: ignore[misc]
    expired.verify_message = "certificate has expired"
    assert failure_reason(expired) == "CERTIFICATE_VERIFY_FAILED: certificate has expired"


def test_serve_checks_the_tls_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(raftkv.serve, "run_node", started.append)
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


def test_up_tls_files_and_banner(tmp_path: Path) -> None:
    tls = prepare_tls(tmp_path, "127.0.0.1")
    password = tls.password()
    assert len(password) >= 24 and (tmp_path / "client-password").stat().st_mode & 0o077 == 0
    assert prepare_tls(tmp_path, "127.0.0.1").password() == password  # made once
    assert ssl.create_default_context(cafile=str(tls.ca))
    args = tls.node_args()
    assert "--tls-cert" in args and "--peer-tls-ca" in args
    assert tls.client_env()["RAFTKV_REQUIREPASS"] == password
    text = banner(3, "127.0.0.1", 7000, {"node_id": "1", "term": "2"}, "./d", tls)
    assert password not in text  # the lines read the file instead
    assert f"--tls --cacert {tls.ca}" in text and "RAFTKV_PASSWORD=$(cat" in text
    assert f"RAFTKV_CACERT={tls.ca}" in text


def test_client_security_from_options_and_env(tmp_path: Path) -> None:
    certs.create(tmp_path)
    ca = str(tmp_path / "ca.crt")
    assert from_env({}) is None
    sec = from_env({"RAFTKV_CACERT": ca, "RAFTKV_USER": "u", "RAFTKV_PASSWORD": "p"})
    assert sec is not None and sec.ssl is not None and sec.auth_args() == ["AUTH", "u", "p"]
    assert "'p'" not in repr(sec)
    only_pw = from_env({"RAFTKV_PASSWORD": "p"})
    assert only_pw is not None and only_pw.ssl is None and only_pw.auth_args() == ["AUTH", "p"]
    opts = security_options(False, ca, None, None, None, None)
    assert isinstance(opts["ssl"], ssl.SSLContext) and "password" not in opts
    assert security_options(False, None, None, None, None, None) == {}
    with pytest.raises(OSError):
        security_options(True, str(tmp_path / "missing.crt"), None, None, None, None)
