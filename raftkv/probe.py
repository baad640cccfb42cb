"""A tiny blocking RESP client for the admin commands (`raftkv up`, `raftkv status`,
``--join``), and the text of ``INFO raft``'s members both ways.

The full client library lives in client/; this is just enough to ask a node ``INFO raft``
without pulling trio into a one-shot command. A neutral helper: the runtime, the tools,
client/ and chaos/ may all import it.
"""

from __future__ import annotations

import os
import socket
import ssl

from wire.addr import parse_addr
from wire.raft import ClusterConfig
from wire.reply import ErrorReply
from wire.resp import encode_command
from wire.resp_reply import NEED_MORE, ReplyParser

# The answer to AUTH from a node whose default user needs no password: carry on.
AUTH_NOT_NEEDED = "ERR AUTH <password> called without any password configured"


def _credentials() -> list[str] | None:
    """AUTH's arguments from RAFTKV_USER/RAFTKV_PASSWORD (the admin commands and a --join
    node use them to talk to nodes that require authentication), or None."""
    password = os.environ.get("RAFTKV_PASSWORD")
    if not password:
        return None
    user = os.environ.get("RAFTKV_USER")
    return [user, password] if user else [password]


def _tls() -> ssl.SSLContext | None:
    """A TLS context if RAFTKV_CACERT names the CA of the client ports (with
    RAFTKV_CERT/RAFTKV_KEY, a client certificate too), else None: plain text."""
    ca = os.environ.get("RAFTKV_CACERT")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    cert = os.environ.get("RAFTKV_CERT")
    if cert:
        ctx.load_cert_chain(cert, os.environ.get("RAFTKV_KEY") or None)
    return ctx


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    ctx = _tls()
    if ctx is None:
        return sock
    try:
        return ctx.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def call(addr: str, *args: str | bytes, timeout: float = 1.0) -> object:
    """Send one command to ``host:port`` and return its reply value (over TLS if
    RAFTKV_CACERT is set; after AUTH if RAFTKV_PASSWORD is set, and a failed AUTH's error
    is returned instead)."""
    host, port = parse_addr(addr)
    auth = _credentials()
    with _connect(host, port, timeout) as sock:
        payload = encode_command(*args)
        if auth is not None:
            payload = encode_command("AUTH", *auth) + payload
        sock.sendall(payload)
        parser = ReplyParser()
        replies: list[object] = []
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{addr} closed the connection")
            parser.feed(data)
            while (reply := parser.next_reply()) is not NEED_MORE:
                replies.append(reply)
            if (auth is not None and replies and isinstance(replies[0], ErrorReply)
                    and not replies[0].text.startswith(AUTH_NOT_NEEDED)):
                return replies[0]
            if len(replies) == (2 if auth is not None else 1):
                return replies[-1]


def parse_info(reply: object) -> dict[str, str]:
    """INFO's ``key:value`` lines -> dict (section headers and blank lines dropped)."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            out[key] = value
    return out


def info_raft(addr: str, timeout: float = 1.0) -> dict[str, str]:
    """``INFO raft`` of one node as a dict of strings."""
    text = call(addr, "INFO", "raft", timeout=timeout)
    if not isinstance(text, bytes):
        raise ConnectionError(f"{addr}: unexpected INFO reply {text!r}")
    return parse_info(text)


def describe_members(config: ClusterConfig) -> str:
    """``1=host:port(voter),4=host:port(learner)`` for INFO raft."""
    return ",".join(
        f"{m.id}={m.peer_addr}({'learner' if m.learner else 'voter'})" for m in config.members
    )


def parse_members(text: str) -> dict[int, tuple[str, str]]:
    """INFO raft's ``members`` back to {id: (peer_addr, role)}."""
    out: dict[int, tuple[str, str]] = {}
    for item in filter(None, text.split(",")):
        ident, _, rest = item.partition("=")
        addr, _, role = rest.partition("(")
        if ident.isdigit():
            out[int(ident)] = (addr, role.rstrip(")") or "voter")
    return out
