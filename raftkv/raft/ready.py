"""The batch of work the core hands to the runtime (etcd's Ready), and confirmed reads."""

from __future__ import annotations

import attrs

from raftkv.raft.log_storage import LogStorage
from wire.raft import Entry, HardState, InstallSnapshot, RaftMessage, SnapshotMeta


@attrs.define  # not frozen: one is made per read, and a frozen class's __init__ cost 3.5x
class ReadState:
    """A linearizable read of ``ctx`` may be served once the state machine applied ``index``."""

    ctx: bytes
    index: int


@attrs.frozen
class Ready:
    """Handle in this order: the snapshot work (below); ``persist(storage, ready)``; send
    ``messages`` if ``send_before_sync``; ``storage.sync()`` if ``must_sync``; send
    ``messages`` if not sent yet; apply ``committed_entries`` and serve ``read_states``; fail
    ``failed_reads``; then ``node.advance(ready)``. Unless ``send_before_sync`` says
    otherwise, messages go out only after the entries and hard state are durable: that is
    what makes a vote or an append acknowledgement a promise. The runtime, the simulator and
    the test harness all follow this one contract. While a Ready is in hand (its fsync
    running), the runtime may send what ``RaftCore.take_early`` hands out at any moment:
    messages that promise nothing about a write not yet durable (a leader's heartbeats, a
    follower's heartbeat replies); they are then no part of a later Ready.

    Snapshot work (a follower receiving InstallSnapshot): if ``snapshot_discard``, abort the
    partly received snapshot. Then write each of ``snapshot_chunks`` (InstallSnapshot
    messages, contiguous) through a ``storage.snapshot_writer(chunk.meta)``: a chunk at
    offset 0, or for another meta, starts a new writer (aborting any other). After the chunk
    with ``done``: ``writer.finish()`` (installs it), restore the state machine from
    ``storage.snapshot_data()`` and consider everything up to ``meta.index`` applied. The
    core stops reading storage from the moment it hands out that chunk until ``advance``,
    so the install may run in another thread."""

    messages: list[RaftMessage] = attrs.field(factory=list)
    entries: list[Entry] = attrs.field(factory=list)
    hard_state: HardState | None = None
    committed_entries: list[Entry] = attrs.field(factory=list)
    read_states: list[ReadState] = attrs.field(factory=list)
    failed_reads: list[bytes] = attrs.field(factory=list)
    must_sync: bool = False
    # The messages may leave before this Ready's writes are durable: set only on a leader's
    # Ready that changes no term or vote and carries no snapshot work. A leader may send its
    # new entries while its own fsync runs (dissertation 10.2.1): it counts its own copy
    # toward a commit only after ``advance``, and nothing else it says depends on the
    # entries being on its disk. A vote, an append acknowledgement or any message of a new
    # term is a promise and waits for the fsync.
    send_before_sync: bool = False
    snapshot_chunks: list[InstallSnapshot] = attrs.field(factory=list)
    snapshot_discard: bool = False

    @property
    def installed_snapshot(self) -> SnapshotMeta | None:
        """The snapshot this Ready installs (its last chunk is done), if any."""
        if self.snapshot_chunks and self.snapshot_chunks[-1].done:
            return self.snapshot_chunks[-1].meta
        return None


def persist(storage: LogStorage, rd: Ready) -> None:
    """Hand a Ready's writes to storage, in the one order the runtime, the simulator and the
    test harness all use: the entries, then the hard state.

    A crash before ``sync`` may keep any prefix of these writes (a torn WAL tail), so the
    order decides which half-states a restart can see:

    - Entries first means a surviving hard state always comes with the entries before it,
      so a durable commit index never points past entries that are not durable. (Hard state
      first would let a commit index survive without the entries that replace a stale
      suffix, and a restarted follower would apply the stale entries as committed.)
    - The cost is the other half-state: entries of term T without the hard state that
      raised the term to T. The core restarts in the highest of the stored term and the last
      entry's term (``RaftCore._restart_term``), so a node never runs below a term it holds
      an entry of; the simulator checks that after every step ("term below log").
    """
    if rd.entries:
        storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
