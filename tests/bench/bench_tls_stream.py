"""CPU per round trip of the stream layer alone: plain trio.SocketStream, raftkv's
PlainStream (raftkv/node/plain_stream.py), trio.SSLStream and raftkv's TLSStream
(raftkv/node/tls_stream.py), one process, a socket pair, an echo task.

Run: python tests/bench/bench_tls_stream.py [--trips 20000] [--size 100] [--rounds 3]

Each round runs every stream kind (in alternating order) and prints the process CPU time
per round trip (both ends, so two sends and two receives of ``--size`` bytes): CPU time,
not wall time, so that the load of a shared machine barely moves it. The ratios between
kinds in one run are the figure to read.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from raftkv import certs
from raftkv.node.plain_stream import PlainStream
from raftkv.node.tls_stream import handshake
from raftkv.server.client_tls import client_tls_context

Pair = tuple[trio.abc.Stream, trio.abc.Stream]


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = socket.socketpair()
    return (trio.SocketStream(trio.socket.from_stdlib_socket(a)),
            trio.SocketStream(trio.socket.from_stdlib_socket(b)))


async def plain(_: Path) -> Pair:
    return socket_pair()


async def lean(_: Path) -> Pair:
    a, b = socket.socketpair()
    return PlainStream(a), PlainStream(b)


async def trio_ssl(pki: Path) -> Pair:
    a, b = socket_pair()
    server = trio.SSLStream(a, server_ctx(pki), server_side=True)
    client = trio.SSLStream(b, client_ctx(pki), server_hostname="localhost")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        await client.do_handshake()
    return server, client


async def tls_stream(pki: Path) -> Pair:
    a, b = socket_pair()
    done: dict[str, trio.abc.Stream] = {}

    async def serve() -> None:
        done["server"] = await handshake(a, server_ctx(pki), server_side=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        done["client"] = await handshake(b, client_ctx(pki), server_side=False,
                                         server_hostname="localhost")
    return done["server"], done["client"]


def server_ctx(pki: Path) -> ssl.SSLContext:
    return client_tls_context(str(pki / "node.crt"), str(pki / "node.key"))


def client_ctx(pki: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki / "ca.crt"))


async def round_trips(make: Callable[[Path], Awaitable[Pair]], pki: Path, trips: int,
                      size: int) -> float:
    """Process CPU seconds per round trip."""
    server, client = await make(pki)
    message = b"x" * size

    async def echo() -> None:
        while data := await server.receive_some(65536):
            await server.send_all(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        start = time.process_time()
        for _ in range(trips):
            await client.send_all(message)
            got = 0
            while got < size:
                got += len(await client.receive_some(65536))
        took = time.process_time() - start
        nursery.cancel_scope.cancel()
    for s in (server, client):
        await trio.aclose_forcefully(s)
    return took / trips


async def main(trips: int, size: int, rounds: int) -> None:
    kinds = {"plain": plain, "PlainStream": lean, "trio.SSLStream": trio_ssl,
             "TLSStream": tls_stream}
    results: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp)
        certs.create(pki)
        for n in range(rounds):
            order = list(kinds) if n % 2 == 0 else list(kinds)[::-1]
            for name in order:
                cpu = await round_trips(kinds[name], pki, trips, size)
                results[name].append(cpu)
                print(f"round {n} {name:15} {cpu * 1e6:7.1f} us CPU per round trip",
                      flush=True)
    base = statistics.median(results["plain"])
    for name, values in results.items():
        med = statistics.median(values)
        print(f"median {name:15} {med * 1e6:7.1f} us  (x{med / base:.2f} plain; TLS part "
              f"{(med - base) * 1e6:6.1f} us)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trips", type=int, default=20000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    trio.run(main, opts.trips, opts.size, opts.rounds)
