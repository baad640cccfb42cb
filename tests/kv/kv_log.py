"""A state machine fed entries at increasing log indexes, as the node's applier feeds it,
for the tests of what an applied entry records (changes, notifications)."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.changes import Change

T0 = 1_700_000_000_000  # the leader's stamp (ms) of every entry unless a test says otherwise


def b(*args: str | bytes | int) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


class AppliedLog:
    def __init__(self) -> None:
        self.kv = KVStateMachine()
        self.index = 0

    def apply_changes(self, *args: str | bytes | int, t: int = T0) -> list[Change]:
        """Apply one command at the next index; the changes it recorded."""
        self.index += 1
        self.kv.apply(encode_entry(b(*args), t), index=self.index)
        return list(self.kv.last_changes)
