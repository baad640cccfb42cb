"""XREAD ... BLOCK readers waiting for the change feed: bounded, woken by the applier.

A blocked reader is a ``Pending`` owed to its connection, a task of the node that waits
on the reader's own ``trio.Event`` until its deadline, and two closures: ``wants`` (would
this change be part of my answer?) and ``retry`` (read the feed again from my ids). The
applier hands every applied batch's changes to ``changes_applied``, which sets the Event
of each reader that wants one of them: no polling, and a reader holds no per-event memory
(it reads the retained tail when woken). The reader's connection ending (its input closed,
or the connection torn down) wakes it too, so a vanished client frees its slot at once.

At most ``limit`` readers block at once on a node (``--watch-max-blocked``); one more gets
``TOO_MANY``. A reader whose deadline passes gets a null reply, as in Redis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio

from raftkv.kv.changes import Change
from raftkv.node.pending import Pending
from wire.reply import ErrorReply

Spawn = Callable[..., None]  # starts ``fn(*args)`` as a task of the node


def too_many(limit: int) -> ErrorReply:
    return ErrorReply(f"ERR max blocked readers reached ({limit}, --watch-max-blocked); "
                      "retry later, or XREAD without BLOCK")


class _Reader:
    __slots__ = ("gone", "pending", "retry", "wake", "wants")

    def __init__(self, pending: Pending, wants: Callable[[Change], bool],
                 retry: Callable[[], Any]) -> None:
        self.pending = pending
        self.wants = wants
        self.retry = retry  # the reply now, or None to keep waiting
        self.wake = trio.Event()
        self.gone = False  # its connection ended


class BlockedReaders:
    """The node's blocked XREADs (module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._readers: set[_Reader] = set()
        self.stats = {"blocked_readers_refused": 0, "blocked_readers_served": 0,
                      "blocked_readers_timed_out": 0}

    def __len__(self) -> int:
        return len(self._readers)

    def changes_applied(self, changes: list[Change]) -> None:
        """The applier's listener: wake each reader that wants one of ``changes``."""
        for reader in self._readers:
            if not reader.wake.is_set():
                wants = reader.wants
                for change in changes:
                    if wants(change):
                        reader.wake.set()
                        break

    def block(self, spawn: Spawn, timeout_ms: int, wants: Callable[[Change], bool],
              retry: Callable[[], Any], on_end: list[Callable[[], None]]) -> Pending:
        """A Pending answered by ``retry()`` once it gives a reply after a wanted change,
        or None after ``timeout_ms`` (0: no deadline). ``on_end``: the connection's list
        of callbacks run when it ends (the reader registers there)."""
        if len(self._readers) >= self.limit:
            self.stats["blocked_readers_refused"] += 1
            return Pending.of(too_many(self.limit))
        pending = Pending()
        reader = _Reader(pending, wants, retry)
        self._readers.add(reader)

        def hang_up() -> None:
            reader.gone = True
            reader.wake.set()

        on_end.append(hang_up)
        deadline = math.inf if timeout_ms == 0 else trio.current_time() + timeout_ms / 1000
        spawn(self._wait, reader, deadline, on_end, hang_up)
        return pending

    async def _wait(self, reader: _Reader, deadline: float, on_end: list[Callable[[], None]],
                    hang_up: Callable[[], None]) -> None:
        try:
            with trio.move_on_at(deadline):
                while not reader.gone:
                    await reader.wake.wait()
                    reader.wake = trio.Event()
                    if reader.gone:
                        break
                    try:
                        reply = reader.retry()
                    except Exception as exc:  # a bug here must not stop the node's nursery
                        reply = ErrorReply(f"ERR internal error reading the change feed: "
                                           f"{type(exc).__name__}")
                    if reply is not None:
                        self.stats["blocked_readers_served"] += 1
                        reader.pending.set(reply)
                        return
            if not reader.gone:
                self.stats["blocked_readers_timed_out"] += 1
        finally:
            self._readers.discard(reader)
            if hang_up in on_end:
                on_end.remove(hang_up)
            reader.pending.set(None)  # timed out, client gone or node stopping: null
