"""The node freezes its start-up heap (raftkv.node.heap): full collections skip it, and
what is allocated later, cycles included, is still collected."""

from __future__ import annotations

import gc
import weakref

from raftkv.node.heap import freeze_startup_heap


class Node:
    """A stand-in for a long-lived start-up object; weakref-able."""

    def __init__(self) -> None:
        self.me = self  # a cycle


def test_start_up_objects_are_frozen_and_later_cycles_still_collected() -> None:
    old = [object() for _ in range(10)]  # the list is tracked (its items are not)
    try:
        frozen = freeze_startup_heap()
        assert frozen >= len(old)
        ids = {id(o) for o in gc.get_objects()}
        assert id(old) not in ids  # no collection walks it any more
        later = Node()
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None  # a cycle made after the freeze is collected
    finally:
        gc.unfreeze()
