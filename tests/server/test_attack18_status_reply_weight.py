"""attack18: a status or error reply weighs 16 bytes in the output buffer, whatever its length.

``output_buffer.reply_size`` counts bytes exactly, arrays by sample, and anything else
(integers, null, ``SimpleString``, ``ErrorReply``) as ``_SMALL`` (16). But a status or error
reply can be as large as a value: ``EVAL_RO "return {ok=redis.call('GET', KEYS[1])}" 1 big``
answers the value as a SimpleString (``{err=...}`` / ``redis.error_reply`` as an error).
Such a reply escapes ``--client-output-buffer-limit`` and ``--client-buffer-total``: a
client that pipelines them and never reads is never cut off (each queued reply a separate
string of the value's size, up to the pipeline window of 1,024 per connection), where a
``GET`` of the same value is cut at the limit. Measured (one-node leader in process,
default 64 MiB limit, a 4 MB value, one connection pipelining 200 commands and reading
nothing, /tmp/a18/status_mem.py): 200 such EVAL_RO held +770 MB of RSS with the
connection's ``out_bytes`` at 3,200 and no disconnect; 200 GETs were cut off, +0 MB. On
a TLS connection the direct path hands the whole encoding to the TLS stream and weighs
the (empty) rest as nothing. lead50's
a9602bb sends every one-piece reply without weighing it first: the same, on every port.

The same bound is defeated by an array whose first 256 items (the sample ``reply_size``
weighs) are small: ``EVAL_RO`` returning 256 empty strings then 14 copies of a 4 MB value
weighs 4,336 bytes for 56 MB (14 separate objects once converted from Lua); 20 of them
pipelined and unread held +1,071 MB, ``out_bytes`` 86,720, no disconnect
(/tmp/a18/array_mem.py). ``MGET`` of 256 missing keys then a large key many times is
weighed the same (its items share one object: the accounting, not the memory).
"""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import trio

from chaos.cluster import free_ports
from raftkv import certs
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients
from raftkv.server.output_buffer import reply_size
from wire.reply import ErrorReply, Push, Replies, SimpleString
from wire.resp import encode_command, encode_reply

VALUE = 3_000_000  # over the output-buffer limit below
LIMIT = 1_000_000


def test_a_status_or_error_reply_weighs_its_length() -> None:
    assert reply_size(SimpleString("x" * VALUE)) >= VALUE
    assert reply_size(ErrorReply("ERR " + "x" * VALUE)) >= VALUE


def test_an_array_is_not_weighed_by_its_small_first_items() -> None:
    reply = [b""] * 256 + [b"x" * 1_000_000 for _ in range(14)]
    assert reply_size(reply) >= 14_000_000 // 2


async def _read_line(stream: trio.SSLStream) -> bytes:
    buf = b""
    while b"\r\n" not in buf:
        with trio.fail_after(20):
            data = await stream.receive_some(1 << 16)
        assert data
        buf += data
    return buf


async def test_a_large_status_reply_counts_against_the_output_buffer_on_tls(
        tmp_path: Path) -> None:
    certs.create(tmp_path / "pki")
    peer, client = free_ports(2)
    s = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client}",
                     peer_addr=f"127.0.0.1:{peer}", cluster={1: f"127.0.0.1:{peer}"},
                     data_dir=str(tmp_path / "data"), fsync="never", snapshot_entries=0,
                     tls_cert=str(tmp_path / "pki" / "node.crt"),
                     tls_key=str(tmp_path / "pki" / "node.key"),
                     client_output_buffer_limit=LIMIT)
    node = Node(s, admin=Pending.of)
    server = ClientServer(node)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.crt"))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, server))
        with trio.fail_after(30):
            while node.core.role is not Role.LEADER:
                await node.driver.role_changed.wait()
            # (and its feature level recorded, as testing.one_node_port waits: the script
            # below then runs under the one budget it always gets)
            while not node.kv.is_published(1) or node.kv.cluster_level != node.level:
                await node.next_tick()
        tcp = await trio.open_tcp_stream("127.0.0.1", client)
        stream = trio.SSLStream(tcp, ctx, server_hostname="localhost")
        await stream.do_handshake()
        # A plain SET: the value made by a script (``string.rep('x', 3000000)``) cost 3M
        # units, over the 1M --script-budget once the level is recorded, and fit only in
        # the 10M of an entry proposed before it: the test failed (``-ERR Script exceeded
        # the instruction budget``) whenever the node recorded its level before the EVAL,
        # which load made likely (session 11).
        await stream.send_all(encode_command(b"SET", b"big", b"x" * VALUE))
        line = await _read_line(stream)
        assert line == b"+OK\r\n", line
        # A reply larger than the limit, then a PING, pipelined: weighed, the reply cuts
        # the connection off (as a GET of the value does); unweighed, both come back.
        await stream.send_all(encode_command(
            b"EVAL_RO", b"return {ok=redis.call('GET', KEYS[1])}", b"1", b"big")
            + encode_command(b"PING"))
        got = b""
        with trio.fail_after(30):
            while not got.endswith(b"+PONG\r\n"):
                try:
                    data = await stream.receive_some(1 << 20)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not data:
                    break
                got += data
        assert server.stats["client_output_buffer_disconnects"] == 1, len(got)
        await trio.aclose_forcefully(stream)
        nursery.cancel_scope.cancel()


class _Bytes(bytes):
    pass


class _List(list):  # type: ignore[type-arg]
    pass


def test_every_reply_type_weighs_at_least_its_encoding() -> None:
    """Statuses, errors, texts, big integers, doubles, pushes, maps, sets and subclasses of
    the plain types: none weighs less than it encodes to (nor far more: at most 4x a
    non-ASCII text, whose UTF-8 length is not looked at)."""
    n = 100_000
    for value in (SimpleString("x" * n), ErrorReply("ERR " + "x" * n), "x" * n, "é" * n,
                  10 ** 4000, -(10 ** 4000), 1.0e-300, float("-inf"), True,
                  Push((b"message", b"ch", SimpleString("x" * n))),
                  Replies((SimpleString("x" * n), ErrorReply("ERR " + "y" * n))),
                  {b"k": SimpleString("x" * n)}, {SimpleString("x" * n)},
                  [ErrorReply("ERR " + "x" * 100)] * 1000, _Bytes(b"x" * n),
                  bytearray(n), _List([b"x" * 100] * 1000)):
        for proto in (2, 3):
            encoded = len(encode_reply(value, proto))
            assert encoded <= reply_size(value) <= 4 * encoded + 64, (type(value), proto)
