"""Bookkeeping for linearizable reads by ReadIndex (dissertation 6.4).

Leader side: a read is registered with the current commit index, then waits until a quorum
has answered an AppendEntries *sent after it was registered*. Rounds are numbered (``seq``);
every AppendEntries carries the latest round number and the reply echoes it, so a quorum of
replies with seq >= r confirms every read of round r and earlier. All reads registered
between two rounds share one round (one heartbeat per follower for any number of reads).
A new leader's reads wait until its no-op entry commits: only then does its commit index
cover every entry committed by earlier leaders.

A round's heartbeat goes only to as many voters as a quorum needs besides the leader,
those that answered the latest rounds first: the others' answers would confirm nothing
more, and each cost the leader a message in and the follower a message each way. A round
still unconfirmed at the next tick goes to every peer (a chosen follower that is slow or
gone costs the reads a tick or two, not a heartbeat interval); every heartbeat and append
carries the latest round number anyway.

Follower side: the reads made between two ready() calls go to the leader as one request
(a batch id), which it answers with one confirmed index for all of them.
"""

from __future__ import annotations

from collections import deque

import attrs


@attrs.define
class PendingRead:
    ctx: bytes
    src: int  # 0: this node's own read; otherwise the follower that asked
    index: int = 0


@attrs.define
class LeaderReads:
    seq: int = 0  # latest round number handed out
    waiting_commit: list[PendingRead] = attrs.field(factory=list)  # before the no-op commits
    unassigned: list[PendingRead] = attrs.field(factory=list)  # next round's reads
    rounds: deque[tuple[int, list[PendingRead]]] = attrs.field(factory=deque)
    # A round's heartbeat goes to the voters a quorum needs, not to every peer (the core's
    # ``_round_peers``); rounds up to ``told_all`` were also sent to every peer, and
    # ``waited`` is the oldest round the last tick found unconfirmed.
    told_all: int = 0
    waited: int = 0

    def overdue(self) -> bool:
        """At a tick: is the oldest round unconfirmed since the last tick, and not yet sent
        to every peer? (Its chosen peers are slow or gone: the others should hear it.)"""
        oldest = self.rounds[0][0] if self.rounds else 0
        late = oldest > self.told_all and oldest == self.waited
        self.waited = oldest
        return late

    def add(self, read: PendingRead, committed_in_term: bool) -> None:
        (self.unassigned if committed_in_term else self.waiting_commit).append(read)

    def release_waiting(self) -> None:
        """The leader's no-op committed: queued reads may join the next round."""
        self.unassigned.extend(self.waiting_commit)
        self.waiting_commit.clear()

    def start_round(self, commit: int) -> tuple[int, list[PendingRead]]:
        """Stamp the unassigned reads with ``commit`` and open round ``seq + 1`` for them."""
        reads, self.unassigned = self.unassigned, []
        for r in reads:
            r.index = commit
        self.seq += 1
        self.rounds.append((self.seq, reads))
        return self.seq, reads

    def confirm(self, seq: int) -> list[PendingRead]:
        """Rounds up to ``seq`` are confirmed by a quorum: their reads are released."""
        out: list[PendingRead] = []
        while self.rounds and self.rounds[0][0] <= seq:
            out.extend(self.rounds.popleft()[1])
        return out

    def drain(self) -> list[PendingRead]:
        """Every read still pending (leadership lost: they all fail)."""
        out = self.waiting_commit + self.unassigned
        for _, reads in self.rounds:
            out.extend(reads)
        self.waiting_commit, self.unassigned = [], []
        self.rounds.clear()
        return out

    def __len__(self) -> int:
        return (
            len(self.waiting_commit)
            + len(self.unassigned)
            + sum(len(reads) for _, reads in self.rounds)
        )


@attrs.define
class ForwardedRead:
    """A follower's batch of reads waiting for the leader's ReadIndexResponse: one request
    (``ctx``, the batch's id) for every read (``ctxs``) made between two ready() calls."""

    ctx: bytes
    leader: int
    ctxs: list[bytes]
    age: int = 0  # ticks since it was sent; it fails after read_timeout_ticks
