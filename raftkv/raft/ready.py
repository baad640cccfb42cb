"""The batch of work the core hands to the runtime (etcd's Ready), and confirmed reads."""

from __future__ import annotations

import attrs

from wire.raft import Entry, HardState


@attrs.frozen
class ReadState:
    """A linearizable read of ``ctx`` may be served once the state machine applied ``index``."""

    ctx: bytes
    index: int


@attrs.frozen
class Ready:
    """Handle in this order: ``storage.append(entries)``, ``storage.set_hard_state(hard_state)``
    (if not None), ``storage.sync()`` if ``must_sync``; then send ``messages``; then apply
    ``committed_entries`` and serve ``read_states``; fail ``failed_reads``; then
    ``node.advance(ready)``. Messages go out only after the entries and hard state are durable:
    that is what makes a vote or an append acknowledgement a promise."""

    messages: list = attrs.field(factory=list)
    entries: list[Entry] = attrs.field(factory=list)
    hard_state: HardState | None = None
    committed_entries: list[Entry] = attrs.field(factory=list)
    read_states: list[ReadState] = attrs.field(factory=list)
    failed_reads: list[bytes] = attrs.field(factory=list)
    must_sync: bool = False
