"""A reply that will exist later.

Client connections answer pipelined commands in order by awaiting one ``Pending`` per
command; the node fills them from the apply loop, a read confirmation, or a forwarded
reply. Filling is synchronous and idempotent (the first value wins), so the apply loop never
awaits a client and a late reply to an abandoned request is simply dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio


class Pending:
    __slots__ = ("_callbacks", "_event", "done", "value")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self._event: trio.Event | None = None
        self._callbacks: list[Callable[[Any], None]] | None = None

    @classmethod
    def of(cls, value: Any) -> Pending:
        """An already-answered Pending (local commands, immediate errors)."""
        p = cls()
        p.done = True
        p.value = value
        return p

    def set(self, value: Any) -> None:
        if self.done:
            return
        self.done = True
        self.value = value
        if self._event is not None:
            self._event.set()
        if self._callbacks:
            for cb in self._callbacks:
                cb(value)
            self._callbacks = None

    def add_callback(self, cb: Callable[[Any], None]) -> None:
        """Call ``cb(value)`` once set (immediately if already set)."""
        if self.done:
            cb(self.value)
        else:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(cb)

    async def wait(self) -> Any:
        if not self.done:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return self.value
