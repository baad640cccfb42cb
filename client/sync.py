"""A blocking client for scripts that do not run trio, on the same code as the async one.

Design choice: one dedicated thread runs ``trio.run`` holding an async ``Client``; each
blocking call hops into it with ``trio.from_thread.run`` and waits for the result. So the
protocol, leader discovery, deadlines and retry rules are exactly the async client's
(nothing is written twice), at the cost of a thread hop per call (tens of microseconds;
pipeline for bulk work). The thread is a daemon so a script that forgets ``close()``
still exits; ``with connect_sync(...)`` closes it properly.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import trio

from client.api import CALLER, Client
from client.commands import Arg, Commands, Convert
from client.feed import Change
from client.pipeline import Pipeline
from client.status import NodeStatus
from client.watch import Watch


class SyncClient(Commands):
    """``with connect_sync(["127.0.0.1:7001"]) as kv: kv.set("a", "1"); kv.get("a")``."""

    def __init__(self, endpoints: str | Iterable[str] | None = None, **options: Any) -> None:
        eager = options.pop("eager", True)
        self._client = Client(endpoints, eager=False, **options)
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,),
                                        name="raftkv-client", daemon=True)
        self._thread.start()
        self._ready.wait()
        if eager:
            try:
                self._portal(self._client.connect_once)
            except BaseException:
                self.close()
                raise

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._client.aclose()

    def _portal(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if not self._thread.is_alive():
            raise RuntimeError("the client is closed")
        caller = threading.current_thread()  # (Client._hold: one caller per thread)

        async def as_caller() -> Any:
            CALLER.set(caller)
            return await fn(*args)

        return trio.from_thread.run(as_caller, trio_token=self._token)

    # -- API -------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The async client underneath (its settings, ``current_endpoint``, ...)."""
        return self._client

    @property
    def current_endpoint(self) -> str | None:
        return self._client.current_endpoint

    def execute(self, *args: Arg) -> Any:
        """Run any command; its raw reply, or the typed error raised."""
        return self._portal(self._client.execute, *args)

    def _call(self, args: tuple[Arg, ...], convert: Convert = None) -> Any:
        return self._portal(self._client._call_async, args, convert)

    def connect_once(self) -> str:
        return self._portal(self._client.connect_once)

    def cluster_status(self) -> list[NodeStatus]:
        return self._portal(self._client.cluster_status)

    def pipeline(self) -> SyncPipeline:
        return SyncPipeline(self)

    def watch(self, pattern: str | bytes = "*", start: str = "$", **options: Any) -> SyncWatch:
        """``for change in kv.watch("user:*"): ...``: the async ``Client.watch`` as a
        blocking iterator (same resumption across nodes); ``close()`` it, or use ``with``."""
        return SyncWatch(self, self._client.watch(pattern, start, **options))

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncPipeline(Pipeline):
    """The async pipeline's queue, executed through the sync client's trio thread."""

    def __init__(self, owner: SyncClient) -> None:
        super().__init__(owner.client)
        self._owner = owner

    def execute(self, raise_on_error: bool = True) -> list[Any]:  # type: ignore[override]
        return self._owner._portal(super().execute, raise_on_error)


class SyncWatch:
    """A blocking iterator over an async ``Watch``, each step run in the client's thread."""

    def __init__(self, owner: SyncClient, watch: Watch) -> None:
        self._owner = owner
        self.watch = watch  # last_id, endpoint, resumes, rejected

    def __iter__(self) -> Iterator[Change]:
        return self

    def __next__(self) -> Change:
        try:
            return self._owner._portal(self.watch.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """End the watch (a ``next()`` blocked in another thread returns StopIteration)."""
        if self._owner._thread.is_alive():
            self._owner._portal(self.watch.aclose)

    def __enter__(self) -> SyncWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_sync(endpoints: str | Iterable[str] | None = None, **options: Any) -> SyncClient:
    """The blocking twin of ``client.connect``; same options."""
    return SyncClient(endpoints, **options)
