"""How raftkv-cli's commands that print until stopped (``watch``, ``SUBSCRIBE``) end.

Both run their async loop under ``trio.run`` in the main thread, so Ctrl-C reaches it
directly, and share one set of exit statuses: the loop's own, 130 on Ctrl-C, 0 when the
reader of a pipe goes away (``| head``), 2 when no node answers at the start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from client.errors import ConnectionFailed
from client.format import Output

INTERRUPTED = 130


def run_until_stopped(out: Output, loop: Callable[..., Awaitable[int | None]],
                      *args: Any) -> int:
    """``trio.run(loop, *args)``'s exit status (None counts as 0), or how it was stopped."""
    try:
        return trio.run(loop, *args) or 0
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # The reader left: stop quietly, and keep Python's exit-time flush of stdout from
        # failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConnectionFailed as exc:
        out.error(f"Could not connect to RaftKV: {exc}")
        return 2
