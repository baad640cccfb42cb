"""Large blocks go straight back to the OS when freed: glibc's mmap threshold, fixed.

glibc serves an allocation above its mmap threshold (128 KiB at start) with a mapping of its
own, unmapped when freed. But each time such a block is freed it raises the threshold to
that block's size (up to 32 MiB), so the next ones of that size come from the heap instead,
where a freed block is only given back once nothing newer sits above it. A snapshot copies
the node's large maps for its encoder (two dicts of ~5 MiB at 100k keys,
``KVStateMachine.snapshot_state``) and drops them a moment later: after the first, the
copies came from the heap, and whenever a small allocation landed above them their ~10 MiB
stayed resident for tens of seconds (every node's RSS stepped up 5-15 MiB and back down
again at random under a long overwrite run: tests/bench/bench_memory.py, README
"Performance"). Setting the threshold ourselves turns the adjustment off, so every block
from ``THRESHOLD`` up is a mapping again and leaves with its last reference.

Process-wide, so it is set by the command that runs a node (``raftkv.serve.run_node``), not
by a ``Node``: tests run several nodes in one process with the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3

THRESHOLD = 1 << 20  # above the buffers a write or a peer frame uses, below a 100k-key map
TRIM = 2 * THRESHOLD  # what glibc's own adjustment would pair with it


def fix_mmap_threshold(threshold: int = THRESHOLD, trim: int = TRIM) -> bool:
    """Fix glibc's mmap and trim thresholds; False where the C library is not glibc (or
    refused), and nothing changed."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim))
