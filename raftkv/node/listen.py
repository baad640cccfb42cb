"""Starting a listener with an error that names the flag and the address that failed.

A port already in use surfaces from trio as an ``OSError`` inside one or more nested
ExceptionGroups (a 60-line traceback); ``raftkv serve`` instead prints one line such as
``raftkv serve: cannot listen on 127.0.0.1:7001 (--client-addr): Address already in use``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio


class ListenError(Exception):
    """A listener could not be opened; ``str()`` is the one line to show the operator."""

    def __init__(self, flag: str, addr: str, error: OSError) -> None:
        self.flag, self.addr, self.error = flag, addr, error
        reason = error.strerror or str(error)
        super().__init__(f"cannot listen on {addr} ({flag}): {reason}")


def first_oserror(exc: BaseException) -> OSError | None:
    """The first OSError in ``exc`` or, through ExceptionGroups, in what it holds."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_oserror(inner)
            if found is not None:
                return found
    return None


def first_listen_error(exc: BaseException) -> ListenError | None:
    if isinstance(exc, ListenError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_listen_error(inner)
            if found is not None:
                return found
    return None


async def start_listener(nursery: trio.Nursery, flag: str, addr: str,
                         fn: Callable[..., Any], *args: Any) -> Any:
    """``await nursery.start(fn, *args)``; an OSError before it started -> ListenError."""
    try:
        return await nursery.start(fn, *args)
    except (OSError, BaseExceptionGroup) as exc:
        error = first_oserror(exc)
        if error is None:
            raise
        raise ListenError(flag, addr, error) from exc
