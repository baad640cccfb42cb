"""Tuning knobs of the consensus core, and the test-only bug switches."""

from __future__ import annotations

import attrs

# Test-only switches that deliberately break one Raft rule each, so the simulator can prove
# that its checks catch the violation. Never set outside tests.
BUGS = frozenset(
    {
        "vote_without_log_check",  # grant votes to candidates with a less up-to-date log
        "commit_previous_term",  # commit a previous-term entry by counting replicas (Fig. 8)
        "read_without_quorum",  # release ReadIndex reads without a heartbeat round
        "skip_persist_vote",  # the Ready's hard state never carries the vote
        "truncate_matching_suffix",  # follower rewrites its log from every AppendEntries
        "no_term_check_on_append",  # follower accepts AppendEntries from a stale term
    }
)


def _check_bugs(_inst: object, _attr: object, value: frozenset[str]) -> None:
    unknown = set(value) - BUGS
    if unknown:
        raise ValueError(f"unknown bug switches {sorted(unknown)}; known: {sorted(BUGS)}")


@attrs.frozen
class RaftConfig:
    """Times are in ticks (the runtime ticks every 10 ms by default)."""

    election_ticks: int = attrs.field(default=15, validator=attrs.validators.ge(2))
    heartbeat_ticks: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    max_inflight: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    max_batch_bytes: int = attrs.field(default=1 << 20, validator=attrs.validators.ge(1))
    # Bytes of committed entries handed out per Ready (at least one entry).
    max_apply_bytes: int = attrs.field(default=4 << 20, validator=attrs.validators.ge(1))
    # Snapshot transfer: chunk size, chunks in flight per follower, and how many ticks
    # without an acknowledgement before the unacknowledged chunks are sent again.
    snapshot_chunk_bytes: int = attrs.field(default=512 << 10, validator=attrs.validators.ge(1))
    snapshot_window: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    snapshot_retry_ticks: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    # A follower abandons a partial snapshot receive after this many ticks without a chunk
    # (a live leader resends every snapshot_retry_ticks; a gone one never will).
    snapshot_receive_ticks: int = attrs.field(
        default=attrs.Factory(lambda self: 10 * self.snapshot_retry_ticks, takes_self=True),
        validator=attrs.validators.ge(1),
    )
    # A read forwarded to the leader fails (``failed_reads``) if no answer came by then. It
    # takes a request, a heartbeat round and an answer: four one-way delays, so this must
    # be well past an election timeout, or every follower read fails on a slow network.
    read_timeout_ticks: int = attrs.field(
        default=attrs.Factory(lambda self: 4 * self.election_ticks, takes_self=True),
        validator=attrs.validators.ge(1),
    )
    pre_vote: bool = True
    check_quorum: bool = True
    # CheckQuorum's window: a leader that heard from no quorum for this long steps down.
    # Twice the election timeout, i.e. the longest a follower waits before campaigning
    # (its timeout is drawn from [election, 2 x election)): a follower busy receiving one
    # large AppendEntries (an 8 MiB frame took 50-250 ms to arrive and decode on a loaded
    # 2-core machine, during which it can answer nothing) no longer deposes a leader that
    # the followers themselves still follow. A leader cut off from its quorum still steps
    # down before, or about when, the others elect a new one; reads never rely on a lease.
    check_quorum_ticks: int = attrs.field(
        default=attrs.Factory(lambda self: 2 * self.election_ticks, takes_self=True),
        validator=attrs.validators.ge(1),
    )
    # How a leader tells followers that the commit index advanced when no AppendEntries
    # with new entries is about to carry it. False: an empty AppendEntries at once (every
    # commit costs a message to and a reply from each follower). True: at the next tick,
    # read round or follower read released, whichever comes first; under load the next
    # append carries it anyway. Either way only timing changes: a follower never learns a
    # commit index its log does not hold. The runtime turns it on (raftkv.node.node): at
    # one client it saves a third of a write's messages.
    lazy_commit: bool = False
    bugs: frozenset[str] = attrs.field(
        default=frozenset(), converter=frozenset, validator=_check_bugs
    )

    def __attrs_post_init__(self) -> None:
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError("heartbeat_ticks must be smaller than election_ticks")
