"""The batch of work the core hands to the runtime (etcd's Ready), and confirmed reads."""

from __future__ import annotations

import attrs

from wire.raft import Entry, HardState, InstallSnapshot, SnapshotMeta


@attrs.frozen
class ReadState:
    """A linearizable read of ``ctx`` may be served once the state machine applied ``index``."""

    ctx: bytes
    index: int


@attrs.frozen
class Ready:
    """Handle in this order: the snapshot work (below), ``storage.append(entries)``,
    ``storage.set_hard_state(hard_state)`` (if not None), ``storage.sync()`` if ``must_sync``;
    then send ``messages``; then apply ``committed_entries`` and serve ``read_states``; fail
    ``failed_reads``; then ``node.advance(ready)``. Messages go out only after the entries and
    hard state are durable: that is what makes a vote or an append acknowledgement a promise.

    Snapshot work (a follower receiving InstallSnapshot): if ``snapshot_discard``, abort the
    partly received snapshot. Then write each of ``snapshot_chunks`` (InstallSnapshot
    messages, contiguous) through a ``storage.snapshot_writer(chunk.meta)``: a chunk at
    offset 0, or for another meta, starts a new writer (aborting any other). After the chunk
    with ``done``: ``writer.finish()`` (installs it), restore the state machine from
    ``storage.snapshot_data()`` and consider everything up to ``meta.index`` applied. The
    core stops reading storage from the moment it hands out that chunk until ``advance``,
    so the install may run in another thread."""

    messages: list = attrs.field(factory=list)
    entries: list[Entry] = attrs.field(factory=list)
    hard_state: HardState | None = None
    committed_entries: list[Entry] = attrs.field(factory=list)
    read_states: list[ReadState] = attrs.field(factory=list)
    failed_reads: list[bytes] = attrs.field(factory=list)
    must_sync: bool = False
    snapshot_chunks: list[InstallSnapshot] = attrs.field(factory=list)
    snapshot_discard: bool = False

    @property
    def installed_snapshot(self) -> SnapshotMeta | None:
        """The snapshot this Ready installs (its last chunk is done), if any."""
        if self.snapshot_chunks and self.snapshot_chunks[-1].done:
            return self.snapshot_chunks[-1].meta
        return None
