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
    __slots__ = ("_callback", "_callbacks", "_event", "done", "value")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self._event: trio.Event | None = None
        # The first callback in a slot of its own, any later ones in a list: nearly every
        # Pending gets one (the client port's reply slot), and a list built per command
        # for it cost ~0.1 us of each (allocation, append, loop; p16).
        self._callback: Callable[[Any], None] | None = None
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
        first = self._callback
        if first is not None:
            self._callback = None
            first(value)
            if self._callbacks:
                for cb in self._callbacks:
                    cb(value)
                self._callbacks = None

    def add_callback(self, cb: Callable[[Any], None]) -> None:
        """Call ``cb(value)`` once set (immediately if already set); in the order added."""
        if self.done:
            cb(self.value)
        elif self._callback is None:
            self._callback = cb
        elif self._callbacks is None:
            self._callbacks = [cb]
        else:
            self._callbacks.append(cb)

    async def wait(self) -> Any:
        if not self.done:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return self.value
