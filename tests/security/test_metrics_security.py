"""What the ops port speaks (raftkv.server.http_auth), decided from the flags before start:
when it reuses the client port's certificate, which token it accepts and how a request
presents it, and the usage errors and warnings `raftkv serve` gives for bad settings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftkv import certs
from raftkv.cli import main
from raftkv.server.http_auth import (
    MetricsSecurity,
    MetricsSecurityError,
    load_token,
    metrics_warnings,
    parse_headers,
    presented_token,
)

TOKEN = b"0123456789abcdef0123"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    certs.create(out)
    return out


def token_file(tmp_path: Path, text: str = TOKEN.decode() + "\n") -> str:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_plain_by_default_and_tls_from_the_client_port(pki: Path) -> None:
    assert MetricsSecurity.from_options({}).context is None
    client = {"tls_cert": str(pki / "node.crt"), "tls_key": str(pki / "node.key")}
    assert MetricsSecurity.from_options(client).scheme == "https"
    assert MetricsSecurity.from_options({**client, "metrics_plain_http": True}).context is None
    own = {"metrics_tls_cert": str(pki / "node.crt"), "metrics_tls_key": str(pki / "node.key")}
    assert MetricsSecurity.from_options(own).scheme == "https"


def test_contradictions_and_missing_files_name_the_flag(pki: Path, tmp_path: Path) -> None:
    cases = [
        ({"metrics_tls_cert": str(pki / "node.crt")}, "missing --metrics-tls-key"),
        ({"metrics_tls_client_auth": True}, "needs TLS on the metrics port"),
        ({"metrics_plain_http": True, "metrics_tls_cert": "x"}, "contradicts"),
        ({"tls_cert": str(pki / "node.crt"), "tls_key": str(pki / "node.key"),
          "metrics_tls_client_auth": True}, "needs --metrics-tls-ca"),
        ({"metrics_tls_cert": str(tmp_path / "nope.crt"), "metrics_tls_key": "k"},
         "cannot load certificate"),
        ({"metrics_token_file": str(tmp_path / "missing")}, "cannot read"),
    ]
    for options, text in cases:
        with pytest.raises(MetricsSecurityError, match=text):
            MetricsSecurity.from_options(options)


def test_tokens_must_be_long_visible_and_bounded(tmp_path: Path) -> None:
    assert load_token(token_file(tmp_path)) == TOKEN
    for text, why in (("short\n", "at least 16"), ("a" * 10 + " " + "b" * 10, "visible"),
                      ("x" * 5000, "over 4096")):
        with pytest.raises(MetricsSecurityError, match=why):
            load_token(token_file(tmp_path, text))


def test_the_token_is_accepted_as_bearer_or_basic_password(tmp_path: Path) -> None:
    sec = MetricsSecurity.from_options({"metrics_token_file": token_file(tmp_path)})
    basic = base64.b64encode(b"prometheus:" + TOKEN)
    assert sec.authorized({b"authorization": b"Bearer " + TOKEN})
    assert sec.authorized({b"authorization": b"bearer  " + TOKEN})
    assert sec.authorized({b"authorization": b"Basic " + basic})
    for bad in (b"", b"Bearer", b"Bearer " + TOKEN[:-1], b"Basic !!!", b"Token " + TOKEN,
                b"Basic " + base64.b64encode(TOKEN), b"Bearer " + TOKEN + b"x"):
        assert not sec.authorized({b"authorization": bad}), bad
    assert not sec.authorized({})
    assert MetricsSecurity().authorized({})  # no token configured: open
    assert presented_token(b"Basic " + base64.b64encode(b"u:p:q")) == b"p:q"


def test_headers_are_parsed_case_insensitively_and_strictly() -> None:
    head = (b"GET /metrics HTTP/1.1\r\nHost: x\r\nAUTHORIZATION:  Bearer abc \r\n"
            b"bad line\r\n folded: no\r\n\r\n")
    assert parse_headers(head) == {b"host": b"x", b"authorization": b"Bearer abc"}


def test_warnings_for_an_open_metrics_port_beyond_loopback(tmp_path: Path) -> None:
    assert metrics_warnings({"metrics_addr": "127.0.0.1:9001"}) == []
    [open_port] = metrics_warnings({"metrics_addr": "0.0.0.0:9001"})
    assert "--metrics-token-file" in open_port
    assert metrics_warnings({"metrics_addr": "0.0.0.0:9001",
                             "metrics_token_file": token_file(tmp_path)}) == []
    loose = token_file(tmp_path)
    Path(loose).chmod(0o644)
    [perm] = metrics_warnings({"metrics_addr": "127.0.0.1:9001", "metrics_token_file": loose})
    assert "chmod 600" in perm


def test_serve_refuses_a_bad_metrics_setting_before_starting(tmp_path: Path) -> None:
    short = token_file(tmp_path, "abc\n")
    result = CliRunner().invoke(main, [
        "serve", "--id", "1", "--cluster", "1=127.0.0.1:7101", "--data-dir",
        str(tmp_path / "d"), "--metrics-addr", "127.0.0.1:9001", "--metrics-token-file", short])
    assert result.exit_code == 2
    assert "--metrics-token-file" in result.output and "at least 16" in result.output
    assert not (tmp_path / "d").exists()
