"""A process's children, for the attack scripts that watch a node's snapshot encoders."""

from __future__ import annotations

import os


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (every thread's ``children`` list); [] once it is gone."""
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids
