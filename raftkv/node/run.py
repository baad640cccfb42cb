"""Run a node until SIGTERM/SIGINT, then stop it gracefully (leader hands over first)."""

from __future__ import annotations

import logging
import signal
import sys

import trio

from raftkv.log import event
from raftkv.node.node import Node
from raftkv.node.settings import NodeSettings

log = logging.getLogger("raftkv.node")


async def serve_until_signalled(settings: NodeSettings) -> None:
    node = Node(settings)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            event(log, logging.WARNING if settings.fsync != "always" else logging.INFO,
                  "node serving", id=settings.node_id, client=settings.client_advertised,
                  peer=settings.peer_advertised, client_port=node.client_port)
            async for signum in signals:
                event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
                await node.stop()
                break


def run_node(settings: NodeSettings) -> None:
    try:
        trio.run(serve_until_signalled, settings)
    except OSError as exc:
        print(f"raftkv serve: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
