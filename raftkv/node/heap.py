"""What the node does with the garbage collector at start: freeze what lives for its life.

CPython's full collection walks every tracked object, on the event loop (issue 12;
raftkv.server.gc_watch times it). Most of a started node's tracked objects never become
garbage: the modules, classes and functions imported (about 42,000 objects) and the state
loaded from disk. ``gc.freeze()`` moves them to the permanent generation, which no
collection walks, so a full pass costs what was allocated since.

Memory stays bounded: a frozen object is still freed by reference counting when its last
reference goes (log entries, values, sessions are not in cycles); only a reference cycle
among frozen objects would outlive its last use, and those are what existed at start,
collected just before (``gc.collect()``), so the most that can be held is bounded by the
start-up population, once. Everything allocated later is collected as before (the
default thresholds, cycles included).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect, then freeze every object alive now; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
