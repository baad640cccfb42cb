"""TLS and a bearer token for the ops HTTP port (``--metrics-addr``), issue 13 and 16.

What the port speaks, decided once at start (``MetricsSecurity.from_settings``):

- **TLS.** ``--metrics-tls-cert/--metrics-tls-key`` give the port a certificate of its
  own. Without them, a node whose client port has TLS (``--tls-cert``) serves the ops port
  over TLS with the *same* certificate, as etcd serves ``/metrics`` on its client URL with
  the client TLS: turning TLS on never leaves a plain-text port behind by surprise.
  ``--metrics-plain-http`` keeps the port plain anyway (a scraper on the same host).
- **Client certificates.** ``--metrics-tls-client-auth`` requires one signed by
  ``--metrics-tls-ca`` (default ``--tls-ca``). Off by default even when the client port
  requires them: Kubernetes probes and most load balancers cannot present one. When on,
  it applies to every path (the handshake comes before the request).
- **A token for /metrics.** ``--metrics-token-file FILE``: ``GET /metrics`` needs
  ``Authorization: Bearer TOKEN`` (Prometheus ``authorization: {credentials_file: ...}``)
  or HTTP basic auth whose password is TOKEN, any user name (Prometheus ``basic_auth``).
  Otherwise 401 with ``WWW-Authenticate``. ``/livez`` and ``/readyz`` stay open: load
  balancers and kubelets probe them without credentials, and they tell no more than
  "ready" or a one-line reason. Tokens are compared with ``hmac.compare_digest`` and never
  logged. Wrong tokens drain the source address's bucket of failures as wrong AUTH
  passwords do on the client port (raftkv.server.auth_limit: per address, an IPv6 /64
  too); an address with none left gets 429 with ``Retry-After`` before its token is even
  compared (a right guess would still tell), so a guesser gets ``auth_limit.RATE`` tries a
  second, not as many as the port answers.

Everything is loaded before the node starts; a file that does not load is a usage error
naming its flag.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import os
import ssl
import stat
import time
from collections.abc import Mapping
from typing import Any

import attrs

from raftkv.node.log_throttle import LogThrottle
from raftkv.node.peer_auth import loose_permissions
from raftkv.node.security import exposed_addresses
from raftkv.node.tls import tls_context
from raftkv.server.auth_limit import FailedAuths, auth_source

log = logging.getLogger("raftkv.http")

MIN_TOKEN_BYTES = 16
MAX_TOKEN_BYTES = 4096
REALM = 'realm="raftkv metrics"'
LOG_LINES = 30  # TLS and token failure lines per 10 s over every address


class MetricsSecurityError(ValueError):
    """A metrics-port security setting that cannot work; the text names the flag."""


def load_token(path: str) -> bytes:
    """The token in ``path``: surrounding whitespace stripped, 16 to 4096 visible ASCII
    characters (it travels in an HTTP header; a short one can be guessed)."""
    try:
        # Only a regular file, opened without blocking: it is read twice (the CLI's check,
        # then the node's start), so a pipe was empty the second time (attack5).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise MetricsSecurityError(
                    f"--metrics-token-file: {path} is not a regular file")
            data = f.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise MetricsSecurityError(
            f"--metrics-token-file: cannot read {path}: {exc.strerror}") from exc
    token = data.strip()
    if len(data) > MAX_TOKEN_BYTES:
        raise MetricsSecurityError(f"--metrics-token-file: {path} is over {MAX_TOKEN_BYTES} "
                                   "bytes")
    if len(token) < MIN_TOKEN_BYTES:
        raise MetricsSecurityError(
            f"--metrics-token-file: {path} holds {len(token)} bytes; at least "
            f"{MIN_TOKEN_BYTES} are needed (e.g. `openssl rand -hex 32 > {path}`)")
    if not all(0x21 <= b <= 0x7E for b in token):
        raise MetricsSecurityError(f"--metrics-token-file: {path} must hold one token of "
                                   "visible ASCII characters (no spaces or control bytes)")
    return token


def metrics_tls_context(cert: str, key: str, ca: str, client_auth: bool) -> ssl.SSLContext:
    """The ops port's server context; MetricsSecurityError names what failed."""
    ctx = tls_context(ssl.PROTOCOL_TLS_SERVER, cert, key, ca if client_auth else "",
                      error=lambda text: MetricsSecurityError(f"metrics port TLS: {text}"))
    ctx.verify_mode = ssl.CERT_REQUIRED if client_auth else ssl.CERT_NONE
    ctx.num_tickets = 0  # one request per connection: nothing to resume
    return ctx


def _tls_files(o: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(cert, key, ca) the ops port uses, or None for plain HTTP."""
    own = o.get("metrics_tls_cert") or o.get("metrics_tls_key")
    if o.get("metrics_plain_http"):
        if own or o.get("metrics_tls_client_auth"):
            raise MetricsSecurityError("--metrics-plain-http contradicts --metrics-tls-*")
        return None
    if own:
        if not (o.get("metrics_tls_cert") and o.get("metrics_tls_key")):
            missing = "--metrics-tls-key" if o.get("metrics_tls_cert") else "--metrics-tls-cert"
            raise MetricsSecurityError(f"metrics port TLS needs --metrics-tls-cert and "
                                       f"--metrics-tls-key; missing {missing}")
        cert, key = o["metrics_tls_cert"], o["metrics_tls_key"]
    elif o.get("tls_cert") and o.get("tls_key"):
        cert, key = o["tls_cert"], o["tls_key"]  # the client port's, as etcd does
    else:
        if o.get("metrics_tls_client_auth"):
            raise MetricsSecurityError("--metrics-tls-client-auth needs TLS on the metrics "
                                       "port: --metrics-tls-cert/--metrics-tls-key or "
                                       "--tls-cert/--tls-key")
        return None
    ca = o.get("metrics_tls_ca") or o.get("tls_ca") or ""
    if o.get("metrics_tls_client_auth") and not ca:
        raise MetricsSecurityError("--metrics-tls-client-auth needs --metrics-tls-ca (or "
                                   "--tls-ca): the CA that signs scrapers' certificates")
    return cert, key, ca


@attrs.define
class MetricsSecurity:
    """The ops port's TLS context (None: plain HTTP) and /metrics token (None: open)."""

    context: ssl.SSLContext | None = None
    token: bytes | None = None
    # Per address a 10 s and LOG_LINES in all (client_tls.py's rule, for the same reason).
    throttle: LogThrottle = attrs.Factory(lambda: LogThrottle(log, 10.0, max_lines=LOG_LINES))
    # Wrong tokens per source address, as wrong AUTH passwords on the client port.
    failures: FailedAuths = attrs.Factory(lambda: FailedAuths(time.monotonic))
    tls_failures: int = 0
    auth_failures: int = 0
    guessing_refused: int = 0  # /metrics requests refused (429), their token not compared

    @classmethod
    def from_options(cls, o: Mapping[str, Any]) -> MetricsSecurity:
        """From ``raftkv serve``'s options or NodeSettings fields (same names)."""
        files = _tls_files(o)
        context = None
        if files is not None:
            context = metrics_tls_context(*files, bool(o.get("metrics_tls_client_auth")))
        token = load_token(o["metrics_token_file"]) if o.get("metrics_token_file") else None
        return cls(context=context, token=token)

    @classmethod
    def from_settings(cls, settings: Any) -> MetricsSecurity:
        return cls.from_options(attrs.asdict(settings))

    @property
    def scheme(self) -> str:
        return "https" if self.context is not None else "http"

    def retry_after(self, addr: str) -> int:
        """Whole seconds before ``addr`` (HOST:PORT) may present a token again: 0 if it may
        now (or no token is configured)."""
        if self.token is None:
            return 0
        source = auth_source(addr)
        if self.failures.allowed(source):
            return 0
        return max(1, math.ceil(self.failures.retry_after(source)))

    def authorized(self, headers: Mapping[bytes, bytes], addr: str | None = None) -> bool:
        """True if no token is configured or the request carries it. A wrong token counts
        against ``addr``'s failures (no token at all is no guess: not counted)."""
        if self.token is None:
            return True
        given = presented_token(headers.get(b"authorization", b""))
        if given is None:
            return False
        if hmac.compare_digest(given, self.token):
            return True
        if addr is not None:
            self.failures.failed(auth_source(addr))
        return False

    def challenge(self) -> tuple[str, ...]:
        """Headers of a 401: both schemes the port accepts."""
        return (f"WWW-Authenticate: Bearer {REALM}", f"WWW-Authenticate: Basic {REALM}")


def presented_token(value: bytes) -> bytes | None:
    """The token of an ``Authorization`` value: Bearer TOKEN, or Basic's password."""
    scheme, _, rest = value.strip().partition(b" ")
    rest = rest.strip()
    if scheme.lower() == b"bearer":
        return rest or None
    if scheme.lower() == b"basic":
        try:
            decoded = base64.b64decode(rest, validate=True)
        except (binascii.Error, ValueError):
            return None
        _user, sep, password = decoded.partition(b":")
        return password if sep else None
    return None


def parse_headers(head: bytes) -> dict[bytes, bytes]:
    """Header fields of a request head, names lower-cased (the last of a repeated name)."""
    fields: dict[bytes, bytes] = {}
    for line in head.replace(b"\r\n", b"\n").split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name and name == name.strip():
            fields[name.lower()] = value.strip()
    return fields


def metrics_warnings(o: Mapping[str, Any]) -> list[str]:
    """Warnings: a token file others can read; a metrics port reachable beyond loopback
    whose /metrics is open to anyone."""
    out = []
    token, addr = o.get("metrics_token_file"), o.get("metrics_addr")
    if token and loose_permissions(token):
        out.append(f"metrics token file {token} is readable by group or others (chmod 600 "
                   "it)")
    exposed = addr and exposed_addresses({"--metrics-addr": addr})
    if exposed and not token and not o.get("metrics_tls_client_auth"):
        out.append(f"--metrics-addr {addr} is reachable beyond loopback and /metrics is open "
                   "to anyone who reaches it (give --metrics-token-file or "
                   "--metrics-tls-client-auth)")
    return out
