"""Differential fuzzer for write runs (attack24): random pipelines sent to a node that
builds runs (write_run 32) and one that does not (write_run 1), replies compared byte for
byte, then the states, the change feed (ids and deadlines masked) and, with
``notify_keyspace_events=KEA``, keyspace notifications. Not a test:
``python tests/attack/fuzz_write_runs.py SEED N [setting=value...]`` (NodeSettings of
both nodes, e.g. ``max_request_bytes=1024``: seed 8 meets the protocol-error drop of
test_attack24_protocol_error_drops_run.py through an oversized bulk)."""

from __future__ import annotations

import random
import re
import sys
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import trio

from chaos.cluster import free_ports
from raftkv.node.node import Node
from raftkv.testing import one_node_leader
from wire.resp import encode_command

ID = re.compile(rb"id\r\n:\d+|(?<=:)\d{6,}(?=\r\n)")  # ids; TTLs (timing)
FEED_ID = re.compile(rb"\$\d+\r\n\d+-\d+\r\n|(?<=\r\n)\d{12,}(?=\r\n)")  # ids, deadlines
KEYS = [b"a", b"b", b"c", b"ab", b"zz"]
INTS = [b"1", b"-1", b"0", b"9223372036854775807", b"-9223372036854775808", b"x", b"1.5",
        b"", b" 1", b"01", b"99999999999999999999", b"+1", b"-0"]
# (No short relative TTL: whether it ran out between two entries is timing, not a run.)
TTLS = [b"5000000", b"0", b"-1", b"abc", b"9223372036854775807", b"100000",
        b"4611686018427387", b"1e3"]


def _cmd(rng: random.Random) -> list[bytes]:
    k = rng.choice(KEYS)
    v = rng.choice([b"v", b"12", rng.choice(INTS), b"x" * rng.randint(0, 40),
                    b"y" * rng.choice([200, 480, 700, 990, 3000])])
    r = rng.random()
    if r < 0.22:
        c = [b"SET", k, v]
        for _ in range(rng.randint(0, 3)):
            opt = rng.choice([b"NX", b"XX", b"EX", b"PX", b"EXAT", b"PXAT", b"KEEPTTL",
                              b"nx", b"ex", b"GET", b"bogus"])
            c.append(opt)
            if opt.upper() in (b"EX", b"PX", b"EXAT", b"PXAT") and rng.random() < 0.9:
                c.append(rng.choice(TTLS) if opt.upper() in (b"EX", b"PX")
                         else rng.choice([*TTLS, b"1", b"100"]))
        return c
    if r < 0.30:
        return [rng.choice([b"SETNX", b"setnx"]), k, v]
    if r < 0.38:
        return [rng.choice([b"SETEX", b"PSETEX"]), k, rng.choice(TTLS), v]
    if r < 0.52:
        return [rng.choice([b"INCR", b"DECR", b"incr"]), k]
    if r < 0.62:
        return [rng.choice([b"INCRBY", b"DECRBY"]), k, rng.choice(INTS)]
    if r < 0.66:  # wrong arity
        return rng.choice([[b"SET", k], [b"INCR"], [b"INCRBY", k], [b"SETEX", k, b"1"],
                           [b"SETNX", k], [b"DECR", k, b"1"], [b"SET"]])
    if r < 0.72:
        return rng.choice([[b"GET", k], [b"TTL", k], [b"EXISTS", k], [b"MGET", k, b"a"],
                           [b"STRLEN", k]])
    if r < 0.75:
        return [b"set", k + b"=" + v]
    if r < 0.78:
        return rng.choice([[b"DEL", k], [b"APPEND", k, v], [b"MSET", k, v, b"zz", b"1"],
                           [b"GETSET", k, v], [b"INCRBYFLOAT", k, b"1.5"]])
    if r < 0.86:
        return rng.choice([[b"MULTI"], [b"EXEC"], [b"DISCARD"], [b"WATCH", k], [b"UNWATCH"]])
    if r < 0.89:
        return rng.choice([[b"PING"], [b"ECHO", v], [b"HELLO", b"3"], [b"HELLO", b"2"],
                           [b"CLIENT", b"SETNAME", b"n1"], [b"CLIENT", b"GETNAME"],
                           [b"NOSUCH", k]])
    if r < 0.91:
        return rng.choice([[b"SUBSCRIBE", b"ch"], [b"UNSUBSCRIBE"], [b"PSUBSCRIBE", b"p*"],
                           [b"PUNSUBSCRIBE"]])
    if r < 0.93:
        return rng.choice([[b"AUTH", b"lim", b"pw"], [b"AUTH", b"default", b"x"],
                           [b"AUTH", b"lim", b"bad"]])
    if r < 0.95:
        return rng.choice([[b"RESET"], [b"SELECT", b"0"], [b"SELECT", b"1"]])
    return [b"INCRBY", k, str(rng.randint(-3, 3)).encode()]


def _encode(rng: random.Random, c: list[bytes]) -> bytes:
    if rng.random() < 0.25 and all(a and b" " not in a and b'"' not in a for a in c):
        return b" ".join(c) + rng.choice([b"\r\n", b"\n"])
    return encode_command(*c)


async def _send(port: int, chunks: list[bytes], prelude: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    end = encode_command(b"ECHO", b"#end#")
    got = b""
    with trio.fail_after(20):
        if prelude:
            await stream.send_all(prelude)
        for chunk in chunks:
            await stream.send_all(chunk)
        await stream.send_all(b"RESET\r\n" + end)
        while not got.endswith(b"#end#\r\n"):
            data = await stream.receive_some(65536)
            if not data:
                break
            got += data
    await stream.aclose()
    return got


def _state(node: Node) -> dict[bytes, Any]:
    read = node.kv.read
    return {k: (read([b"GET", k]), read([b"TTL", k]) != -1) for k in sorted(node.kv.key_names())}


async def _setup(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(encode_command(b"ACL", b"SETUSER", b"lim", b"on", b">pw", b"~a*",
                                         b"+@all", b"-incr")
                          + encode_command(b"ECHO", b"#end#"))
    got = b""
    while not got.endswith(b"#end#\r\n"):
        got += await stream.receive_some(65536)
    await stream.aclose()


async def main(seed: int, trials: int, **settings: Any) -> int:
    bad = 0
    with TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            runs = await stack.enter_async_context(
                one_node_leader(Path(tmp) / "r", *free_ports(2), **settings))
            alone = await stack.enter_async_context(
                one_node_leader(Path(tmp) / "a", *free_ports(2), **{**settings, "write_run": 1}))
            await _setup(runs.client_port)
            await _setup(alone.client_port)
            subs = []
            for node in (runs, alone):
                sub = await trio.open_tcp_stream("127.0.0.1", node.client_port)
                await sub.send_all(encode_command(b"PSUBSCRIBE", b"__key*"))
                subs.append(sub)
            rng = random.Random(seed)
            for trial in range(trials):
                n = rng.randint(1, 60)
                cmds = [_cmd(rng) for _ in range(n)]
                if rng.random() < 0.2:
                    cmds += [[b"SET", rng.choice(KEYS), b"1"]] * rng.randint(2, 40)
                    rng.shuffle(cmds)
                prelude = encode_command(b"HELLO", b"3") if rng.random() < 0.3 else b""
                data = b"".join(_encode(rng, c) for c in cmds)
                if rng.random() < 0.5:
                    cuts = sorted(rng.sample(range(1, max(2, len(data))),
                                             min(len(data) - 1, rng.randint(1, 8)))) \
                        if len(data) > 2 else []
                    bounds = zip([0, *cuts], [*cuts, len(data)], strict=True)
                    chunks = [data[i:j] for i, j in bounds]
                else:
                    chunks = [data]
                a = ID.sub(b"id#", await _send(runs.client_port, chunks, prelude))
                b = ID.sub(b"id#", await _send(alone.client_port, chunks, prelude))
                sa, sb = _state(runs), _state(alone)
                if a != b or sa != sb:
                    bad += 1
                    print(f"DIFF seed={seed} trial={trial}")
                    print(" cmds:", cmds, "prelude:", prelude, "chunks:", len(chunks))
                    print(" runs :", a)
                    print(" alone:", b)
                    if sa != sb:
                        print(" state runs :", sa)
                        print(" state alone:", sb)
                    if bad >= 3:
                        return bad
            feeds = []
            for node, sub in zip((runs, alone), subs, strict=True):
                feed = await _send(node.client_port, [encode_command(
                    b"XRANGE", b"__raftkv:changes", b"-", b"+", b"COUNT", b"1000000")], b"")
                feeds.append(FEED_ID.sub(b"#", feed))
                # every notification: a marker key's event comes last
                await _send(node.client_port, [encode_command(b"SET", b"zzend", b"1")], b"")
                got = b""
                with trio.fail_after(20):
                    while b"zzend" not in got and settings.get("notify_keyspace_events"):
                        got += await sub.receive_some(65536)
                feeds.append(got)
            print("feed entries:", feeds[0].count(b"op"), "notifications bytes:", len(feeds[1]))
            if feeds[0] != feeds[2]:
                bad += 1
                print("FEED DIFF")
                a, b = feeds[0].split(b"op"), feeds[2].split(b"op")
                for i, (x, y) in enumerate(zip(a, b, strict=False)):
                    if x != y:
                        print(i, len(a), len(b), a[max(0, i - 2):i + 2], b[max(0, i - 2):i + 2])
                        break
            if feeds[1] != feeds[3]:
                bad += 1
                print("NOTIFY DIFF", feeds[1][:3000], feeds[3][:3000])
    return bad


if __name__ == "__main__":
    seed, n = int(sys.argv[1]), int(sys.argv[2])
    extra = dict(a.split("=", 1) for a in sys.argv[3:])
    settings = {k: int(v) if v.isdigit() else v for k, v in extra.items()}
    print("bad:", trio.run(partial(main, seed, n, **settings)))
