"""The composition root: build one node's parts, run them until SIGTERM/SIGINT, then stop
gracefully (a leader hands over first).

This is the one module that knows every floor: it builds the node runtime
(raftkv.node), the client port and the ops HTTP port (raftkv.server) and hands each its
dependencies, so no part imports a layer above it or is wired up from outside.

The ops HTTP port (``--metrics-addr``) runs beside the node in the same event loop, so
``/livez`` proves that loop turns. A listener that cannot bind (port in use, address not
local) ends the process with one line naming the address and its flag.
"""

from __future__ import annotations

import logging
import signal
import sys
from functools import partial

import trio

from raftkv.kv.features import EntryNeedsLevel
from raftkv.log import event, set_term_source
from raftkv.node.large_blocks import fix_mmap_threshold
from raftkv.node.listen import first_listen_error, start_listener
from raftkv.node.node import Node
from raftkv.node.settings import NodeSettings
from raftkv.server.admin import membership_command
from raftkv.server.client_port import ClientServer, serve_clients
from raftkv.server.http import serve_http
from raftkv.server.http_auth import MetricsSecurity
from raftkv.storage import DiskStorageError, StorageFailure

log = logging.getLogger("raftkv.node")
# The "serving" line is printed even without -v (its own logger, at INFO).
serving_log = logging.getLogger("raftkv.serving")


async def serve_until_signalled(settings: NodeSettings, started: list[bool] | None = None
                                ) -> None:
    node = Node(settings, admin=lambda args: membership_command(node, args, forwarded=True))
    clients = ClientServer(node)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            metrics = ""
            if settings.metrics_addr:
                security = MetricsSecurity.from_settings(settings)  # checked by the CLI
                port = await start_listener(nursery, "--metrics-addr", settings.metrics_addr,
                                            serve_http, node, security)
                host = settings.metrics_addr.rpartition(":")[0]
                metrics = f"{security.scheme}://{host}:{port}/metrics" + (
                    " (token)" if security.token is not None else "")
            await nursery.start(node.run, partial(serve_clients, clients))
            set_term_source(lambda: node.core.term)
            if started is not None:
                started.append(True)
            event(serving_log, logging.WARNING if settings.fsync != "always" else logging.INFO,
                  "node serving", id=settings.node_id, client=settings.client_advertised,
                  peer=settings.peer_advertised, client_port=node.client_port,
                  metrics=metrics or "off", data_dir=settings.data_dir, fsync=settings.fsync)
            async for signum in signals:
                event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
                await node.stop()
                break
            nursery.cancel_scope.cancel()  # the HTTP port goes with the node


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; ``exc`` itself if none."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def fatal_line(exc: BaseException, started: bool) -> str | None:
    """The one line to print for an error that stops the node, or None to let it raise.

    A storage error is the operator's business, not a bug: a full disk, a read-only or
    corrupt data directory. It gets one line naming the cause (file and offset for
    corruption), never a traceback per task of the nursery it tore down. The first
    failure is named, not the "failed earlier" refusals that may follow it.
    """
    found = leaves(exc)
    newer = [leaf for leaf in found if isinstance(leaf, EntryNeedsLevel)]
    if newer:  # a later release's entry: never skipped (raftkv.kv.features)
        return f"stopping: {newer[0]}"
    storage = [leaf for leaf in found if isinstance(leaf, DiskStorageError)]
    storage.sort(key=lambda e: isinstance(e, StorageFailure) and "failed earlier" in str(e))
    if storage:
        return f"{'stopping' if started else 'refusing to start'}: {storage[0]}"
    if all(isinstance(leaf, OSError) for leaf in found):
        return str(found[0])
    return None


def run_node(settings: NodeSettings) -> None:
    fix_mmap_threshold()  # (process-wide: raftkv.node.large_blocks)
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        # Inherited from a supervisor: the kernel would reap our snapshot encoders itself
        # (raftkv.node.snapshot_child), their exit status lost and their pids free.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    started: list[bool] = []
    try:
        trio.run(serve_until_signalled, settings, started)
    except (Exception, BaseExceptionGroup) as exc:
        listen = first_listen_error(exc)
        line = str(listen) if listen is not None else fatal_line(exc, bool(started))
        if line is None:
            raise
        print(f"raftkv serve: {line}", file=sys.stderr)
        raise SystemExit(1) from None
