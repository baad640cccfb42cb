"""Every byte offset (attack24): a pipeline of joiners, refusals, inline and legacy forms
split into two or three TCP writes at each offset, answered byte for byte as by a node
without write runs. Not a test: ``python tests/attack/split_write_runs.py``."""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from chaos.cluster import free_ports
from raftkv.testing import one_node_leader
from wire.resp import encode_command

CMDS = [[b"SET", b"a", b"1"], [b"INCR", b"a"], [b"SETNX", b"b", b"x"],
        [b"INCRBY", b"b", b"2"], [b"SET", b"c"], [b"DECRBY", b"a", b"5"], [b"GET", b"a"],
        [b"SETEX", b"d", b"100", b"v"], [b"PSETEX", b"e", b"0", b"v"],
        [b"SET", b"f", b"1", b"NX", b"EX", b"100"], [b"INCR", b"f"]]
DATA = (b"".join(encode_command(*c) for c in CMDS[:6]) + b"set g 1\r\nincr g\r\nDECR g\n"
        + b"".join(encode_command(*c) for c in CMDS[6:]) + b"FLUSHALL\r\nECHO end\r\n")


async def _send(port: int, parts: list[bytes]) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    for part in parts:
        await stream.send_all(part)
        await trio.lowlevel.checkpoint()  # (the node reads what arrived: one read a part)
    got = b""
    with trio.fail_after(20):
        while not got.endswith(b"end\r\n"):
            got += await stream.receive_some(65536)
    await stream.aclose()
    return got


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            runs = await stack.enter_async_context(
                one_node_leader(Path(tmp) / "r", *free_ports(2)))
            alone = await stack.enter_async_context(
                one_node_leader(Path(tmp) / "a", *free_ports(2), write_run=1))
            expected = await _send(alone.client_port, [DATA])
            bad = 0
            for i in range(1, len(DATA)):
                for j in (i, min(len(DATA) - 1, i + 7)):
                    parts = [DATA[:i], DATA[i:j], DATA[j:]]
                    got = await _send(runs.client_port, [p for p in parts if p])
                    if got != expected:
                        bad += 1
                        print("DIFF at", i, j, got, expected)
            print(f"offsets {len(DATA) - 1}, two splits each; bad {bad}")


if __name__ == "__main__":
    trio.run(main)
