"""The leader's checks before it proposes a write are made once (tidy17, issue 15): an
EXEC's payload is decoded once by all the checks before it is proposed (validate,
unbuilt_error, growth_error and entry_cost decoded it up to four times).
"""

from __future__ import annotations

import msgpack
import pytest

from raftkv.kv import commands, encode_exec
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings


def node() -> Node:
    settings = NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                            cluster={1: "127.0.0.1:2"}, data_dir="unused")
    return Node(settings, admin=Pending.of)


def test_an_exec_is_decoded_once_by_its_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every check that decodes: validate, unbuilt_error, growth_error (a SETRANGE),
    # entry_cost (an APPEND).
    n = node()
    payload = encode_exec([], [[b"APPEND", b"k", b"x"], [b"SETRANGE", b"k", b"1", b"y"]])
    decoded: list[bytes] = []
    real = msgpack.unpackb

    def counting(data: bytes, **kwargs: object) -> object:
        if data == payload:
            decoded.append(data)
        return real(data, **kwargs)

    monkeypatch.setattr(commands.msgpack, "unpackb", counting)
    assert n.check([b"EXEC", payload]) is None
    assert len(decoded) == 1
    assert n.check([b"once", b"1", b"1", b"EXEC", payload]) is None
    assert len(decoded) == 2
    assert n.check([b"EXEC", payload]) is None  # a new check: a new decode (none is kept)
    assert len(decoded) == 3 and commands._SHARED == [None, None]


def test_a_shared_decode_is_never_another_payloads() -> None:
    first = encode_exec([], [[b"SET", b"a", b"1"]])
    other = bytes(bytearray(first))  # equal, another object
    commands.shared_exec(first)
    try:
        one = commands.decode_exec(first)
        assert commands.decode_exec(first) is one
        assert commands.decode_exec(other) is not one  # (decoded on its own)
    finally:
        commands.shared_exec(None)
    assert commands.decode_exec(first) is not one
