"""A tiny blocking RESP client for the admin commands (`raftkv up`, `raftkv status`,
``--join``), and the text of ``INFO raft``'s members both ways.

The full client library lives in client/; this is just enough to ask a node ``INFO raft``
without pulling trio into a one-shot command. A neutral helper: the runtime, the tools,
client/ and chaos/ may all import it.
"""

from __future__ import annotations

import socket

from wire.addr import parse_addr
from wire.raft import ClusterConfig
from wire.resp import encode_command
from wire.resp_reply import NEED_MORE, ReplyParser


def call(addr: str, *args: str | bytes, timeout: float = 1.0) -> object:
    """Send one command to ``host:port`` and return its reply value."""
    host, port = parse_addr(addr)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(encode_command(*args))
        parser = ReplyParser()
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{addr} closed the connection")
            parser.feed(data)
            reply = parser.next_reply()
            if reply is not NEED_MORE:
                return reply


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
