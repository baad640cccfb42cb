"""Run a node until SIGTERM/SIGINT, then stop it gracefully (leader hands over first)."""

from __future__ import annotations

import logging
import signal
import sys

import trio

from raftkv.log import event
from raftkv.node.node import Node
from raftkv.node.settings import NodeSettings
from raftkv.storage import DiskStorageError, StorageFailure

log = logging.getLogger("raftkv.node")


async def serve_until_signalled(settings: NodeSettings, started: list[bool] | None = None
                                ) -> None:
    node = Node(settings)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            if started is not None:
                started.append(True)
            event(log, logging.WARNING if settings.fsync != "always" else logging.INFO,
                  "node serving", id=settings.node_id, client=settings.client_advertised,
                  peer=settings.peer_advertised, client_port=node.client_port)
            async for signum in signals:
                event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
                await node.stop()
                break


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
    storage = [leaf for leaf in found if isinstance(leaf, DiskStorageError)]
    storage.sort(key=lambda e: isinstance(e, StorageFailure) and "failed earlier" in str(e))
    if storage:
        return f"{'stopping' if started else 'refusing to start'}: {storage[0]}"
    if all(isinstance(leaf, OSError) for leaf in found):
        return str(found[0])
    return None


def run_node(settings: NodeSettings) -> None:
    started: list[bool] = []
    try:
        trio.run(serve_until_signalled, settings, started)
    except (Exception, BaseExceptionGroup) as exc:
        line = fatal_line(exc, bool(started))
        if line is None:
            raise
        print(f"raftkv serve: {line}", file=sys.stderr)
        raise SystemExit(1) from None
