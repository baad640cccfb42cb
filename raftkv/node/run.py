"""Run a node until SIGTERM/SIGINT, then stop it gracefully (leader hands over first).

The ops HTTP port (``--metrics-addr``) runs beside the node in the same event loop, so
``/livez`` proves that loop turns. A listener that cannot bind (port in use, address not
local) ends the process with one line naming the address and its flag.
"""

from __future__ import annotations

import logging
import signal
import sys

import trio

from raftkv.log import event, set_term_source
from raftkv.node.listen import ListenError, first_listen_error, start_listener
from raftkv.node.node import Node
from raftkv.node.settings import NodeSettings
from raftkv.server.http import serve_http

log = logging.getLogger("raftkv.node")
# The "serving" line is printed even without -v (its own logger, at INFO).
serving_log = logging.getLogger("raftkv.serving")


async def serve_until_signalled(settings: NodeSettings) -> None:
    node = Node(settings)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            metrics = ""
            if settings.metrics_addr:
                port = await start_listener(nursery, "--metrics-addr", settings.metrics_addr,
                                            serve_http, node)
                host = settings.metrics_addr.rpartition(":")[0]
                metrics = f"http://{host}:{port}/metrics"
            await nursery.start(node.run)
            set_term_source(lambda: node.core.term)
            event(serving_log, logging.WARNING if settings.fsync != "always" else logging.INFO,
                  "node serving", id=settings.node_id, client=settings.client_advertised,
                  peer=settings.peer_advertised, client_port=node.client_port,
                  metrics=metrics or "off", data_dir=settings.data_dir, fsync=settings.fsync)
            async for signum in signals:
                event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
                await node.stop()
                break
            nursery.cancel_scope.cancel()  # the HTTP port goes with the node


def run_node(settings: NodeSettings) -> None:
    try:
        trio.run(serve_until_signalled, settings)
    except (ListenError, OSError, BaseExceptionGroup) as exc:
        listen = first_listen_error(exc)
        if listen is not None:
            print(f"raftkv serve: {listen}", file=sys.stderr)
            raise SystemExit(1) from None
        if isinstance(exc, OSError):
            print(f"raftkv serve: {exc}", file=sys.stderr)
            raise SystemExit(1) from exc
        raise
