"""What a peer connection's handshake costs: plain, peer secret, mutual TLS, both.

Dials one loopback listener N times per mode (connect + TLS + Hello + proofs, the link's
whole setup) and prints the mean and p99 in milliseconds. Links are long-lived, so this is
paid once per (re)connection, not per message.

    python tests/bench/bench_peer_handshake.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import trio

from raftkv import certs
from raftkv.node.tls import peer_tls
from raftkv.node.transport import PeerTransport


def transport(node_id: int, peers: dict[int, str], **security: object) -> PeerTransport:
    return PeerTransport(node_id=node_id, cluster_id="bench", listen=("127.0.0.1", 0),
                         advertise_peer_addr="", client_addr="", peers=peers,
                         inbound=lambda msg: None, **security)  # type: ignore[arg-type]


async def measure(n: int, **security: object) -> list[float]:
    async with trio.open_nursery() as nursery:
        listener = transport(1, {2: "127.0.0.1:1"}, **security)
        port = await nursery.start(listener.run)
        dialer = transport(2, {1: f"127.0.0.1:{port}"}, **security)
        link = dialer._links[1]
        times = []
        for _ in range(n):
            start = trio.current_time()
            stream, _, _ = await dialer._dial(link)
            times.append((trio.current_time() - start) * 1000)
            await trio.aclose_forcefully(stream)
        nursery.cancel_scope.cancel()
    return times


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        certs.create(Path(d))
        tls = peer_tls(f"{d}/node.crt", f"{d}/node.key", f"{d}/ca.crt")
        secret = b"s" * 32
        for name, security in (("plain", {}), ("secret", {"secret": secret}),
                               ("tls", {"tls": tls}), ("tls+secret", {"tls": tls,
                                                                      "secret": secret})):
            times = sorted(await measure(n, **security))
            print(f"{name:<11} mean {statistics.mean(times):6.2f} ms   "
                  f"p99 {times[int(len(times) * 0.99) - 1]:6.2f} ms   (n={n})")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 300)
