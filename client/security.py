"""TLS and AUTH for the client library and raftkv-cli (issue 13).

``Security`` says how every connection to a node is opened: over TLS (a ``ssl`` context
that checks the node's certificate; a client certificate too for ``--tls-client-auth``
nodes) and then authenticated with ``AUTH [user] password``. A failed handshake or a
refused password is a ``ConnectionError`` naming the node and the reason, so the client
moves on to the next endpoint and finally says why none could be reached.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import attrs
import trio

from wire.reply import ErrorReply


class HandshakeFailed(ConnectionError):
    """TLS failed or the node refused the credentials."""


class AuthRefused(HandshakeFailed):
    """The node answered the connection's AUTH with an error (WRONGPASS, ...)."""

    def __init__(self, reply: str) -> None:
        super().__init__(f"AUTH failed: {reply}")
        self.reply = reply

    @property
    def credentials_refused(self) -> bool:
        """The node checked the credentials and said no (WRONGPASS; NOAUTH): asking again
        gets the same answer. Not a node too busy to check them (``ERR max number of
        clients reached``, ``ERR too many failed authentications ...; retry in N s``),
        which is worth asking again, like a dead node."""
        return self.reply.split(" ", 1)[0] in REFUSALS


def tls_context(cacert: str | None = None, cert: str | None = None,
                key: str | None = None) -> ssl.SSLContext:
    """A client context: verify the node against ``cacert`` (else the system's CAs) and
    its host name; present ``cert``/``key`` if given."""
    ctx = ssl.create_default_context(cafile=cacert or None)
    if cert:
        ctx.load_cert_chain(cert, key or None)
    return ctx


@attrs.frozen
class Security:
    ssl: ssl.SSLContext | None = None
    # str from options and the environment; bytes as typed in the REPL (client.typed_auth).
    username: str | bytes | None = None
    password: str | bytes | None = attrs.field(default=None, repr=False)

    async def wrap(self, stream: trio.SocketStream, host: str) -> Any:
        """``stream``, or a TLS stream over it once the handshake is done."""
        if self.ssl is None:
            return stream
        tls = trio.SSLStream(stream, self.ssl, server_hostname=host)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            await stream.aclose()
            cause = exc.__cause__
            parts = [getattr(cause, "reason", None), getattr(cause, "verify_message", None)]
            reason = ": ".join(p for p in parts if p) or str(cause or exc)
            raise HandshakeFailed(f"TLS handshake failed: {reason}") from exc
        return tls

    def auth_args(self) -> list[str | bytes] | None:
        """None without a password; an empty one is sent (a ``nopass`` user takes it)."""
        if self.password is None:
            return None
        return ["AUTH", self.username, self.password] if self.username else [
            "AUTH", self.password]


# What a node (or Redis) answers ``AUTH password`` when its default user needs none: the
# password was not needed, so the connection is as good as authenticated (a RAFTKV_PASSWORD
# left in the environment must not make an open cluster unreachable).
NOT_NEEDED = "ERR AUTH <password> called without any password configured"
# The error codes of a node that checked the credentials and refused them.
REFUSALS = frozenset({"WRONGPASS", "NOAUTH"})


def check_auth_reply(reply: object) -> None:
    """HandshakeFailed for a refused AUTH, worded as redis-cli's ``AUTH failed: WRONGPASS
    ...``."""
    if isinstance(reply, ErrorReply) and not reply.text.startswith(NOT_NEEDED):
        raise AuthRefused(reply.text)


def raw_socket(stream: Any) -> Any:
    """The socket under a plain or TLS stream (for polling whether the node closed it)."""
    inner = getattr(stream, "transport_stream", stream)
    return inner.socket


def from_env(environ: dict[str, str] | None = None) -> Security | None:
    """Security from RAFTKV_CACERT (TLS; RAFTKV_CERT/RAFTKV_KEY for a client certificate),
    RAFTKV_USER and RAFTKV_PASSWORD, as raftkv.probe reads them; None if none is set."""
    env = os.environ if environ is None else environ
    ca, password = env.get("RAFTKV_CACERT"), env.get("RAFTKV_PASSWORD")
    if not ca and not password:
        return None
    ctx = tls_context(ca, env.get("RAFTKV_CERT"), env.get("RAFTKV_KEY")) if ca else None
    return Security(ctx, env.get("RAFTKV_USER") or None, password or None)
