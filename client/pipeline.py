"""Pipelining: queue commands, send them in one write, get the replies in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from client.commands import Arg, Commands, Convert, convert_reply
from client.errors import RaftKVError


class Client(Protocol):
    """What a pipeline needs of its client (client.api.Client, which makes pipelines)."""

    async def _run(self, cmds: Sequence[tuple[Arg, ...]]) -> list[Any]: ...


class Pipeline(Commands):
    """``pipe = kv.pipeline(); pipe.set("a", 1).incr("n"); await pipe.execute()``.

    Not a transaction: each command is applied on its own. A failure part-way follows the
    client's retry rules from the first command that did not get a definite answer: it and
    the rest are sent again only if sending it again is safe (it got -TRYAGAIN, or is a
    read or idempotent) and no later command was applied or may have been (each later one
    got -TRYAGAIN, was never sent, or is a read): a refused write is never applied behind
    a later one (attack20). Otherwise each failed command keeps its error (-TRYAGAIN as
    ``TryAgain``, an unanswered one as ``OutcomeUnknown``), as a Redis pipeline reports a
    failed command and runs the rest.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queue: list[tuple[tuple[Arg, ...], Convert]] = []

    def _call(self, args: tuple[Arg, ...], convert: Convert = None) -> Pipeline:
        self._queue.append((args, convert))
        return self

    def __len__(self) -> int:
        return len(self._queue)

    def reset(self) -> None:
        self._queue.clear()

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the queued commands; their results in order (the queue is emptied).

        With ``raise_on_error`` the first error is raised after every reply is in;
        otherwise errors take their command's place in the list as exception objects.
        """
        queue, self._queue = self._queue, []
        if not queue:
            return []
        results = await self._client._run([args for args, _ in queue])
        out: list[Any] = []
        for result, (_, convert) in zip(results, queue, strict=True):
            out.append(result if isinstance(result, RaftKVError)
                       else convert_reply(result, convert))
        if raise_on_error:
            for result in out:
                if isinstance(result, RaftKVError):
                    raise result
        return out
