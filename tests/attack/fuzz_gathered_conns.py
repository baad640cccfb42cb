"""attack24b: differential fuzzer for write runs gathered across connections
(raftkv.node.gathered). Many connections at once, each with its own keys (so each
connection's replies and keys do not depend on how the connections interleave), send
fuzz_write_runs.py's random pipelines in random pieces; the same pieces go to a node that
gathers (write_run 32) and one that does not (write_run 1). Each connection's replies
(ids and TTLs masked) and the final states must be equal. Not a test:
``python tests/attack/fuzz_gathered_conns.py SEED N [CONNS] [setting=value...]`` (``tls=1``:
the client port on TLS)."""

from __future__ import annotations

import random
import ssl
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import trio
from fuzz_write_runs import ID, KEYS, _cmd, _encode, _state

from chaos.cluster import free_ports
from raftkv import certs
from raftkv.testing import one_node_leader
from wire.resp import encode_command


def _more(rng: random.Random) -> list[bytes]:
    """fuzz_write_runs.py's commands, and other write kinds between runs: scripts,
    EXPIRE, GETDEL, SET GET."""
    r = rng.random()
    k = rng.choice(KEYS)
    if r < 0.05:
        return [b"EVAL", b"redis.call('INCR', KEYS[1]); return redis.call('APPEND', KEYS[1], "
                b"ARGV[1])", b"1", k, b"e"]
    if r < 0.08:
        return [b"EVAL", b"return redis.call('SET', KEYS[1], ARGV[1])", b"1", k, b"7"]
    if r < 0.11:
        return [rng.choice([b"EXPIRE", b"PEXPIRE", b"PERSIST"]), k,
                *([b"100000"] if rng.random() < 0.7 else [])]
    if r < 0.13:
        return [b"GETDEL", k]
    if r < 0.15:
        return [b"SET", k, b"9", b"GET"]
    return _cmd(rng)


def _mine(c: list[bytes], cid: int) -> list[bytes] | None:
    """``c`` on connection ``cid``'s own keys (None: a command that reaches others)."""
    if c[0].upper() in (b"AUTH", b"SUBSCRIBE", b"PSUBSCRIBE", b"UNSUBSCRIBE",
                        b"PUNSUBSCRIBE"):
        return None
    p = b"%d:" % cid
    if c[0].lower() == b"set" and len(c) == 2:
        return [c[0], p + c[1]]
    return [c[0], *(p + a if a in KEYS else a for a in c[1:])]


async def _conn(port: int, chunks: list[bytes], rng: random.Random,
                tls: ssl.SSLContext | None = None) -> bytes:
    stream: Any = await trio.open_tcp_stream("127.0.0.1", port)
    if tls is not None:  # (the TLS connection's direct replies: TLSStream.send_nowait)
        stream = trio.SSLStream(stream, tls, server_hostname="127.0.0.1")
        await stream.do_handshake()
    end = encode_command(b"ECHO", b"#end#")
    got = b""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            async def reader() -> None:
                nonlocal got
                while not got.endswith(b"#end#\r\n"):
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    got += data
            nursery.start_soon(reader)
            try:
                for chunk in chunks:
                    await stream.send_all(chunk)
                    for _ in range(rng.choice([0, 0, 1, 3])):
                        await trio.lowlevel.checkpoint()
                    if rng.random() < 0.1:
                        await trio.sleep(0.001)
                await stream.send_all(b"RESET\r\n" + end)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # (a protocol error closed it: what was answered is compared)
    await stream.aclose()
    return got


async def _into(outs: list[bytes], cid: int, port: int, chunks: list[bytes],
                r: float, tls: ssl.SSLContext | None) -> None:
    outs[cid] = await _conn(port, chunks, random.Random(r), tls)


def _pieces(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 12))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


async def trial(seed: int, conns: int, **settings: Any) -> list[str]:
    rng = random.Random(seed)
    tls = None
    if settings.pop("tls", 0):
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    plans = []
    for cid in range(conns):
        cmds = []
        while len(cmds) < rng.randint(5, 60):
            c = _mine(_more(rng), cid)
            if c is not None:
                cmds.append(c)
        # mostly pipelined writes, some connections one command at a time
        data = b"".join(_encode(rng, c) for c in cmds)
        plans.append((_pieces(rng, data), rng.random()))
    results = []
    proposed: list[int] = []
    with TemporaryDirectory() as tmp:
        if tls is not None:
            certs.create(Path(tmp) / "c")
            settings.update(tls_cert=str(Path(tmp) / "c/node.crt"),
                            tls_key=str(Path(tmp) / "c/node.key"))
        for run in (32, 1):
            async with AsyncExitStack() as stack:
                node = await stack.enter_async_context(one_node_leader(
                    Path(tmp) / f"d{run}", *free_ports(2), write_run=run, **settings))
                port = node.client_port
                outs: list[bytes] = [b""] * conns
                async with trio.open_nursery() as nursery:
                    for cid, (chunks, r) in enumerate(plans):
                        nursery.start_soon(_into, outs, cid, port, chunks, r, tls)
                results.append(([ID.sub(b"#", o) for o in outs], _state(node)))
                proposed.append(node.stats["proposed"])
    (a, sa), (b, sb) = results
    print(f"seed {seed}: entries proposed, gathering {proposed[0]}, write_run 1 {proposed[1]}")
    problems = []
    for cid in range(conns):
        if a[cid] != b[cid]:
            problems.append(f"seed {seed} conn {cid}: replies differ\n runs: {a[cid][:600]!r}"
                            f"\n one:  {b[cid][:600]!r}")
    if sa != sb:
        diff = {k: (sa.get(k), sb.get(k)) for k in set(sa) | set(sb) if sa.get(k) != sb.get(k)}
        problems.append(f"seed {seed}: states differ {list(diff.items())[:5]}")
    return problems


async def main(seed: int, n: int, conns: int, **settings: Any) -> int:
    bad = 0
    for s in range(seed, seed + n):
        problems = await trial(s, conns, **settings)
        for p in problems[:3]:
            print(p)
        bad += bool(problems)
    print(f"{n} trials of {conns} connections, {bad} with differences")
    return bad


if __name__ == "__main__":
    args = sys.argv[1:]
    seed, n = int(args[0]), int(args[1])
    conns = int(args[2]) if len(args) > 2 and "=" not in args[2] else 20
    extra = {k: int(v) for k, v in (a.split("=", 1) for a in args[2:] if "=" in a)}
    sys.exit(1 if trio.run(lambda: main(seed, n, conns, **extra)) else 0)
