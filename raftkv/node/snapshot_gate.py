"""Decode a leader's snapshot in full before its last chunk reaches the consensus core.

Why here: the core takes a received snapshot as installed the moment it accepts the last
chunk (its log becomes the snapshot, its commit index the snapshot's), so a snapshot whose
data does not decode must be refused *before* that, or the node can neither install it
nor carry on without it (it used to stop). The core stays as it is; this gate sits between
the peer transport and ``core.step`` for InstallSnapshot messages with ``done`` set:

1. The data is the chunks already written by the node's ``SnapshotWriter`` (streamed
   back from its file as the decoder reads it: the snapshot's bytes are never all in
   memory beside the decoded state) plus the last chunk's. If the writer does not hold
   everything before the last chunk yet (earlier chunks still in a Ready being
   written), the gate waits a few ticks for it; failing that it steps the message
   *without* its data and ``done``, which the core can only reject or acknowledge as a
   duplicate: the leader resends the last chunk later.
2. The data is decoded as the state machine's restore decodes it (``decode_snapshot``),
   in a worker thread. Decoded, the message goes to the core, and the decoded state is
   kept for the install (``take``) so it is not decoded twice.
3. Not decoded: the message is dropped and one line is logged (``snapshot refused``, at
   most once a minute for the same snapshot and leader: a leader resends it for ever). The
   follower stays as it was: nothing was replaced, and its own log and state are intact.
   Resends of the same snapshot from the same leader and term are dropped without
   decoding; the core gives up the partial receive after ``snapshot_receive_ticks``
   without chunks (``discarded``), and the leader's next resend is then rejected by the
   core and restarts the transfer at offset 0, so a leader keeps sending (and a leader
   whose snapshot is good again is taken).

At most one check runs at a time. A resent last chunk arriving meanwhile goes to the core
without its data and ``done``: the core counts it as a duplicate, which keeps its partial
receive alive while a large snapshot is decoded (it would give the receive up after
``snapshot_receive_ticks`` without a chunk).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from raftkv.kv import KVDecodeError, KVState
from raftkv.node.log_throttle import LogThrottle
from raftkv.storage import SnapshotWriter
from wire.raft import InstallSnapshot, SnapshotMeta

log = logging.getLogger("raftkv.node")

WAIT_TICKS = 20  # ticks to wait for the writer to hold the chunks before the last one


class SnapshotGate:
    """The check between the transport and the core for a snapshot's last chunk."""

    def __init__(self, *, step: Callable[[Any], None], writer: Callable[[], SnapshotWriter | None],
                 decode: Callable[[ReceivedData], KVState], next_tick: Callable[[], Awaitable[int]],
                 spawn: Callable[..., None]) -> None:
        self._step = step
        self._writer = writer
        self._decode = decode
        self._next_tick = next_tick
        self._spawn = spawn
        self._busy = False
        self._refused: tuple[SnapshotMeta, int, int] | None = None  # (meta, leader, term)
        self._verified: tuple[SnapshotMeta, KVState] | None = None
        self.refusals = 0
        self._throttle = LogThrottle(log, interval=60.0)  # a leader resends for ever

    def submit(self, msg: InstallSnapshot) -> None:
        """Take the last chunk ``msg`` instead of ``core.step``; it reaches the core only
        once the whole snapshot decoded (or stripped so that it cannot install anything)."""
        if (msg.meta, msg.src, msg.term) == self._refused:
            return  # the core's partial receive times out; then the leader starts over
        if self._busy:
            # A resend while the check runs (decoding a large snapshot takes seconds): the
            # core must hear of it, or it abandons the receive after
            # snapshot_receive_ticks and the check's result comes too late.
            if msg.offset > 0:
                self._step(_harmless(msg))
            return
        self._busy = True
        self._spawn(self._check, msg)

    def discarded(self) -> None:
        """The core gave up its partial receive: a resend may start the transfer over."""
        self._refused = None

    def take(self, meta: SnapshotMeta) -> KVState | None:
        """The state decoded for the snapshot ``meta`` now being installed, if it was."""
        verified, self._verified = self._verified, None
        if verified is not None and verified[0] == meta:
            return verified[1]
        return None

    async def _check(self, msg: InstallSnapshot) -> None:
        try:
            data = await self._gather(msg)
            if data is not None:
                try:
                    state = await trio.to_thread.run_sync(self._decode, data)
                except OSError:  # the receive was dropped meanwhile, or its file unreadable
                    data = None
                except KVDecodeError as exc:
                    self._refuse(msg, data.length, str(exc))
                    return
                except Exception as exc:  # a decoder bug must not stop the node either
                    self._refuse(msg, data.length, f"{type(exc).__name__}: {exc}")
                    return
            if data is None:
                # The chunks before it are not (yet) here: the core cannot take this as the
                # last chunk; it answers with what it holds and the leader resends.
                self._step(_harmless(msg))
                return
            self._verified = (msg.meta, state)
            self._step(msg)
        finally:
            self._busy = False

    async def _gather(self, msg: InstallSnapshot) -> ReceivedData | None:
        """The whole snapshot's data: the writer's file before ``msg.offset``, then ``msg``."""
        if msg.offset == 0:
            return ReceivedData(None, 0, msg.data)
        for _ in range(WAIT_TICKS):
            writer = self._writer()
            if writer is not None and writer.meta == msg.meta and writer.received >= msg.offset:
                return ReceivedData(writer, msg.offset, msg.data)
            await self._next_tick()
        return None

    def _refuse(self, msg: InstallSnapshot, size: int, reason: str) -> None:
        self._refused = (msg.meta, msg.src, msg.term)
        self.refusals += 1
        self._throttle.log((msg.meta.index, msg.meta.term, msg.src), logging.WARNING,
                           "snapshot refused", leader=msg.src, index=msg.meta.index,
                           term=msg.meta.term, bytes=size, reason=reason,
                           refusals=self.refusals)


class ReceivedData:
    """A received snapshot's data as a stream: the first ``prefix`` bytes read from the
    writer's file piece by piece, then the last chunk ``tail``. ``OSError`` from ``read``
    if the writer was aborted meanwhile."""

    def __init__(self, writer: SnapshotWriter | None, prefix: int, tail: bytes) -> None:
        self._writer = writer
        self._prefix = prefix
        self._tail = memoryview(tail)
        self.length = prefix + len(tail)
        self._pos = 0

    def read(self, n: int = -1, /) -> bytes:
        pos = self._pos
        n = self.length - pos if n < 0 else min(n, self.length - pos)
        if n <= 0:
            return b""
        if pos < self._prefix:
            assert self._writer is not None
            block = self._writer.read_at(pos, min(n, self._prefix - pos))
            if not block:
                raise OSError(f"received snapshot ends at {pos}, before {self._prefix}")
        else:
            start = pos - self._prefix
            block = bytes(self._tail[start:start + n])
        self._pos += len(block)
        return block


def _harmless(msg: InstallSnapshot) -> InstallSnapshot:
    """``msg`` without its data and ``done``: the core can only reject it (a hole, another
    transfer) or acknowledge it as a duplicate; it can never install anything from it."""
    return attrs.evolve(msg, data=b"", done=False)
