"""Chaos clients against a scripted RESP server: what each reply becomes in the history."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import trio

from chaos.workload import (
    Client,
    Mix,
    Recorder,
    WorkloadConfig,
    classify,
    final_reads,
    find_leader,
    spread,
)
from wire.reply import OK, ErrorReply, SimpleString
from wire.resp import CommandParser, encode_reply

SILENT = object()  # the server reads the command and never answers
HANG_UP = object()  # the server closes the connection after reading the command


class ScriptedServer:
    """Answers each command with ``script(args)``; counts connections."""

    def __init__(self, script: Callable[[list[bytes]], Any]) -> None:
        self.script = script
        self.connections = 0
        self.commands: list[list[bytes]] = []
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self.handle, listeners, task_status=task_status)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        parser = CommandParser()
        try:
            async for data in stream:
                parser.feed(data)
                for args in parser:
                    self.commands.append(args)
                    reply = self.script(args)
                    if reply is SILENT:
                        continue
                    if reply is HANG_UP:
                        await stream.aclose()
                        return
                    await stream.send_all(encode_reply(reply))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def test_classify() -> None:
    assert classify("read", b"42") == ("ok", 42, None, None)
    assert classify("read", None) == ("ok", None, None, None)
    assert classify("write", SimpleString("OK")) == ("ok", None, None, None)
    assert classify("cas", 1) == ("ok", None, True, None)
    assert classify("cas", 0) == ("ok", None, False, None)
    assert classify("write", ErrorReply("TRYAGAIN no leader"))[0] == "fail"
    assert classify("cas", ErrorReply("UNKNOWN timed out"))[0] == "info"
    # Anything unexpected: a read observed nothing; a write may have happened.
    assert classify("read", ErrorReply("ERR boom"))[0] == "fail"
    assert classify("write", ErrorReply("ERR boom"))[:1] == ("info",)
    assert classify("cas", b"1")[0] == "info"
    assert classify("write", SimpleString("QUEUED"))[0] == "info"


def test_spread_puts_clients_on_every_node() -> None:
    assert spread(5, [1, 2, 3]) == [1, 2, 3, 1, 2]


async def start(nursery: trio.Nursery, script: Callable[[list[bytes]], Any]) -> ScriptedServer:
    server = ScriptedServer(script)
    await nursery.start(server.run)
    return server


def client(port: int, mix: Mix, timeout: float = 2.0) -> Client:
    config = WorkloadConfig(clients=4, keys=1, rate=10, op_timeout=timeout, mix=mix)
    return Client(1, 2, ("127.0.0.1", port), config, Recorder(trio.current_time),
                  random.Random(1))


READS = Mix(read=1.0, write=0.0)
WRITES = Mix(read=0.0, write=1.0)


async def test_ok_operations(nursery: trio.Nursery) -> None:
    def script(args: list[bytes]) -> Any:
        return {b"GET": b"7", b"SET": OK, b"CAS": 1}[args[0]]

    server = await start(nursery, script)
    c = client(server.port, READS)
    op = await c.step()
    assert (op.f, op.key, op.value, op.outcome, op.node, op.process) == (
        "read", "k0", 7, "ok", "n2", 1)
    assert op.complete is not None and op.complete >= op.invoke
    c.config = WorkloadConfig(clients=4, keys=1, mix=WRITES)
    op = await c.step()
    assert (op.f, op.outcome) == ("write", "ok")
    assert server.commands[-1] == [b"SET", b"k0", str(op.value).encode()]
    # Now it knows a value of k0, so a CAS can expect it.
    c.config = WorkloadConfig(clients=4, keys=1, mix=Mix(read=0.0, write=0.0))
    op = await c.step()
    assert op.f == "cas" and op.outcome == "ok" and op.result is True
    assert server.commands[-1][0] == b"CAS"
    assert server.connections == 1  # one connection for all of it
    assert c.rec.counts == {"ok": 3}


async def test_tryagain_is_fail_and_unknown_is_info(nursery: trio.Nursery) -> None:
    replies = iter([ErrorReply("TRYAGAIN no leader known"), ErrorReply("UNKNOWN timed out")])
    server = await start(nursery, lambda args: next(replies))
    c = client(server.port, WRITES)
    op = await c.step()
    assert op.outcome == "fail" and op.error and op.error.startswith("TRYAGAIN")
    assert c.process == 1
    op = await c.step()
    assert op.outcome == "info" and op.process == 1
    assert c.process == 5  # the next operation is a new process (1 + 4 clients)
    assert server.connections == 1  # an error reply leaves the connection in sync


async def test_a_silent_node_times_out_as_info_and_the_client_reconnects(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    answers = iter([SILENT, b"3"])
    server = await start(nursery, lambda args: next(answers))
    c = client(server.port, READS, timeout=2.0)
    op = await c.step()
    assert (op.outcome, op.error) == ("info", "timeout")
    assert op.complete is not None and op.complete - op.invoke == pytest.approx(2.0, abs=0.01)
    op = await c.step()
    assert (op.outcome, op.value) == ("ok", 3)
    assert server.connections == 2  # never read the late reply as the answer to the next op


async def test_connection_lost_after_sending_is_info(nursery: trio.Nursery) -> None:
    server = await start(nursery, lambda args: HANG_UP)
    c = client(server.port, WRITES)
    op = await c.step()
    assert op.outcome == "info" and "closed" in (op.error or "")


async def test_refused_connection_is_fail(nursery: trio.Nursery) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    c = client(port, WRITES)
    op = await c.step()
    assert op.outcome == "fail" and (op.error or "").startswith("connect:")


async def test_run_stops_when_told(nursery: trio.Nursery, autojump_clock: object) -> None:
    server = await start(nursery, lambda args: OK)
    c = client(server.port, WRITES)
    stop = trio.Event()
    async with trio.open_nursery() as inner:
        inner.start_soon(c.run, stop)
        await trio.sleep(5)  # virtual time: about 50 operations at 10/s
        stop.set()
    assert 20 < len(c.rec.ops) < 100
    values = [op.value for op in c.rec.ops]
    assert len(set(values)) == len(values)  # every written value is unique


async def test_find_leader_and_final_reads(nursery: trio.Nursery) -> None:
    def node(role: str, term: int) -> Callable[[list[bytes]], Any]:
        def script(args: list[bytes]) -> Any:
            if args[0] == b"INFO":
                return f"# Raft\r\nrole:{role}\r\nterm:{term}\r\n".encode()
            return b"9" if args[1] == b"k1" else None
        return script

    a = await start(nursery, node("follower", 3))
    b = await start(nursery, node("leader", 2))  # a stale leader
    c = await start(nursery, node("leader", 3))
    addrs = {1: ("127.0.0.1", a.port), 2: ("127.0.0.1", b.port), 3: ("127.0.0.1", c.port)}
    assert await find_leader(addrs) == 3

    async def leader_addr() -> tuple[str, int]:
        return addrs[3]

    assert await final_reads(leader_addr, ["k0", "k1"]) == {"k0": None, "k1": 9}


async def test_expiring_writes_send_px_and_record_the_ttl(nursery: trio.Nursery) -> None:
    server = await start(nursery, lambda args: OK)
    c = client(server.port, Mix(read=0.0, write=1.0, expiring=1.0, ttl_ms=(300, 300)))
    op = await c.step()
    assert server.commands[-1] == [b"SET", b"k0", str(op.value).encode(), b"PX", b"300"]
    assert (op.f, op.outcome, op.ttl) == ("write", "ok", 0.3)
    c.config = WorkloadConfig(clients=4, keys=1, mix=WRITES)
    op = await c.step()
    assert server.commands[-1] == [b"SET", b"k0", str(op.value).encode()] and op.ttl is None
