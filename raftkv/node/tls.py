"""Mutual TLS for peer links (``--peer-tls-cert/--peer-tls-key/--peer-tls-ca``).

Every peer connection, both ways, is TLS (1.2 or later) with certificates verified both
ways against the peer CA: the listener requires a client certificate (CERT_REQUIRED), the
dialer requires the listener's. The TLS handshake runs before the Hello and within the
handshake timeout; a peer whose certificate another CA signed never gets to send a frame.

Hostname checking is off, on purpose: member addresses are often IPs or container names
that change (a re-created container gets a new IP), and the member list itself comes from
the replicated configuration. The trust anchor is the *peer CA*: any certificate it signed
is a member, as in etcd without ``--peer-cert-allowed-cn``. So give peers a CA of their
own, not one that also signs client or web certificates. The Hello's cluster id and node id
checks, and the peer secret if set, still apply on top.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import attrs


class TLSConfigError(Exception):
    """A certificate, key or CA file that cannot be loaded."""


def tls_context(protocol: int, cert: str, key: str, ca: str = "", *,
                labels: tuple[str, str, str] = ("certificate", "key", "CA"),
                error: Callable[[str], Exception] = TLSConfigError) -> ssl.SSLContext:
    """A context of TLS 1.2 or later holding ``cert``/``key`` and, if ``ca`` is given,
    trusting it. A file that cannot be loaded raises ``error(message)``, the message naming
    it by its ``labels`` (the flags a user set) so that the fix is obvious."""
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.2 renegotiation, either way: nothing needs it, and refusing it keeps a
    # connection's reads and writes independent (raftkv/node/tls_stream.py).
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise error(f"cannot load {labels[0]} {cert} / {labels[1]} {key}: {exc}") from exc
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise error(f"cannot load {labels[2]} {ca}: {exc}") from exc
    return ctx


@attrs.frozen
class PeerTLS:
    server: ssl.SSLContext  # for connections we accept
    client: ssl.SSLContext  # for connections we dial


def peer_tls(cert: str, key: str, ca: str) -> PeerTLS:
    """Both contexts from PEM files; TLSConfigError names the file that failed."""
    labels = ("--peer-tls-cert", "--peer-tls-key", "--peer-tls-ca")
    server = tls_context(ssl.PROTOCOL_TLS_SERVER, cert, key, ca, labels=labels)
    client = tls_context(ssl.PROTOCOL_TLS_CLIENT, cert, key, ca, labels=labels)
    for ctx in (server, client):
        ctx.verify_mode = ssl.CERT_REQUIRED
    client.check_hostname = False  # see the module docstring; verify_mode stays REQUIRED
    client.verify_mode = ssl.CERT_REQUIRED
    server.num_tickets = 0  # a dialer never resumes a session: tickets would be wasted work
    return PeerTLS(server=server, client=client)
