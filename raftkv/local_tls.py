"""``raftkv up --tls``: a local cluster with TLS on every port and a client password.

Made once in the data directory and reused by later runs: ``certs/`` (``raftkv certs
create``: a CA, a node certificate for 127.0.0.1/localhost/the host, a client
certificate), ``client-password`` and ``metrics-token`` (random, 0600). Every node gets
the node certificate for its client port and its peer links (mutual TLS), and through the
client port's certificate its metrics port speaks HTTPS too (raftkv.server.http_auth);
``GET /metrics`` needs the token (``--metrics-token-file``), ``/livez`` and ``/readyz`` do
not. The password goes through the nodes' environment (``RAFTKV_REQUIREPASS``, not a
flag: flags show in ``ps``). The lines to connect read the password and the token from
their files instead of printing them.
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path

import attrs

from raftkv import certs
from raftkv.node.peer_auth import ensure_secret_file

CERTS_DIR = "certs"
PASSWORD_FILE = "client-password"
METRICS_TOKEN_FILE = "metrics-token"


@attrs.frozen
class LocalTLS:
    certs: Path
    password_file: Path
    metrics_token_file: Path

    @property
    def ca(self) -> Path:
        return self.certs / "ca.crt"

    def node_args(self) -> list[str]:
        crt, key = str(self.certs / "node.crt"), str(self.certs / "node.key")
        return ["--tls-cert", crt, "--tls-key", key, "--peer-tls-cert", crt,
                "--peer-tls-key", key, "--peer-tls-ca", str(self.ca),
                "--metrics-token-file", str(self.metrics_token_file)]

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def client_env(self) -> dict[str, str]:
        """What raftkv's own probes (preflight, leader wait) and the nodes' --join use."""
        return {"RAFTKV_CACERT": str(self.ca), "RAFTKV_PASSWORD": self.password(),
                "RAFTKV_REQUIREPASS": self.password()}

    def connect_lines(self, cli: str, host: str, port: int, redis_cli: bool
                      ) -> list[tuple[str, str]]:
        ca, pw = shlex.quote(str(self.ca)), shlex.quote(str(self.password_file))
        lines = [(f"RAFTKV_PASSWORD=$(cat {pw}) {cli} --tls --cacert {ca} "
                  f"--endpoints {host}:{port}", "interactive client over TLS")]
        if redis_cli:
            lines.append((f"REDISCLI_AUTH=$(cat {pw}) redis-cli --tls --cacert {ca} "
                          f"-h {host} -p {port}", "any node's port works"))
        lines.append((f"RAFTKV_CACERT={ca} RAFTKV_PASSWORD=$(cat {pw}) raftkv status",
                      "one line per node"))
        return lines

    def metrics_lines(self, host: str, port: int) -> list[tuple[str, str]]:
        """curl lines for the HTTPS metrics port: /metrics with the token, /readyz without."""
        ca, token = shlex.quote(str(self.ca)), shlex.quote(str(self.metrics_token_file))
        url = f"https://{host}:{port}"
        return [(f'curl --cacert {ca} -H "Authorization: Bearer $(cat {token})" {url}/metrics',
                 "Prometheus metrics (HTTPS, token)"),
                (f"curl --cacert {ca} {url}/readyz", "health: /livez /readyz (no token)")]


def prepare(data_dir: Path, host: str) -> LocalTLS:
    """The certificates and the password, made if missing."""
    out = data_dir / CERTS_DIR
    if not (out / "node.crt").exists():
        hosts = tuple(dict.fromkeys((*certs.DEFAULT_HOSTS, host)))
        certs.create(out, hosts)
    password = data_dir / PASSWORD_FILE
    if not password.exists():
        fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
    token = ensure_secret_file(data_dir / METRICS_TOKEN_FILE)  # 64 hex digits, 0600
    return LocalTLS(out, password, token)
