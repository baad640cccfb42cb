"""raftkv.node.sizes: the peer frame limit always holds one maximal request, wrapped as an
entry in an AppendEntries or as a ForwardRequest (issue 12: a 17 MB SET against a fixed
16 MiB frame limit was dropped by the transport on every retry, and commit stalled)."""

from __future__ import annotations

import pytest

from raftkv.kv import encode_entry
from raftkv.node.settings import NodeSettings
from raftkv.node.sizes import (
    MIB,
    max_reply_bytes,
    peer_frame_limit,
    request_size,
    transport_limits,
)
from wire.raft import NORMAL, AppendEntries, Entry, ForwardRequest
from wire.record import encode
from wire.resp import encode_command as resp_command


@pytest.mark.parametrize("max_request", [1, 64 * 1024, 8 * MIB, 20_000_000])
def test_a_maximal_request_fits_in_a_frame_as_entry_and_as_forward(max_request: int) -> None:
    limit = peer_frame_limit(max_request)
    assert limit >= 16 * MIB
    # Many small arguments cost the most framing per byte; one big value the least. Both
    # are as large as --max-request-bytes admits (measured as RESP, request_size).
    value = max(0, max_request - request_size([b"SET", b"k", b""]) - 10)
    many = max(0, (max_request - 30) // 7)
    for args in ([b"SET", b"k", b"v" * value], [b"MSET"] + [b"x"] * many):
        assert request_size(args) <= max_request or max_request < 30
        entry = Entry(2**62 - 1, 2**62 - 1, NORMAL, encode_entry(args))
        ae = AppendEntries(2**62 - 1, 2**63 - 1, 2**63 - 1, 2**62 - 2, 2**62 - 1, (entry,),
                           2**62 - 1, 2**62 - 1)
        assert len(encode(ae)) <= limit
        fwd = ForwardRequest(2**62 - 1, 2**63 - 1, 2**63 - 1, 2**62 - 1, tuple(args))
        assert len(encode(fwd)) <= limit


def test_the_limits_follow_the_flag() -> None:
    s = NodeSettings(node_id=1, client_addr="a:1", peer_addr="a:2", cluster={1: "a:2"},
                     data_dir="d", max_request_bytes=20_000_000)
    assert transport_limits(s).max_frame_size == 2 * 20_000_000 + MIB
    assert max_reply_bytes(s) == 2 * 20_000_000
    assert peer_frame_limit(8 * MIB) == 17 * MIB
    with pytest.raises(ValueError):
        peer_frame_limit(2**31)  # would need a frame the 4-byte header cannot express


def test_request_size_is_the_resp_encoding() -> None:
    for args in ([b"GET", b"k"], [b"SET", b"k" * 10, b"v" * 100_000], [b"x"] * 1000, [b""]):
        assert request_size(args) == len(resp_command(*args))
