"""RaftCore: the consensus state machine (Ongaro's dissertation, in the etcd-io/raft shape).

Inputs: ``tick()``, ``step(message)``, ``propose(data)``, ``read_index(ctx)``,
``transfer_leadership(id)``, ``campaign()``, and ``propose_config(config)`` (the raw
primitive the membership admin API will build on). Outputs: ``ready()`` returns a ``Ready``
batch (entries and hard state to persist, messages to send afterwards, committed entries to
apply, confirmed and failed reads); ``advance(ready)`` says it was handled. Nothing here does
I/O or reads a clock; randomness comes from the ``rng`` the caller passes.

Choices worth knowing (see also the module docstrings of progress, read_only, raft_log):

- Term rules follow etcd: a higher-term message makes us a follower, except pre-votes (and
  granted pre-vote replies). The leader lease: a node that heard from a leader within the
  election timeout ignores higher-term pre-votes (always, dissertation 9.6) and RequestVotes
  (with CheckQuorum, as etcd), unless ``transfer`` is set. Stale AppendEntries get a reply
  carrying our term so that a deposed leader steps down; stale pre-votes get a rejection
  with our term.
- Heartbeats are AppendEntries with no entries. To a follower in PROBE or SNAPSHOT state
  the heartbeat's prev_index is the follower's known match, so the consistency check always
  passes and the follower takes ``min(commit, match)`` as commit (the usual
  ``min(leader_commit, index of last new entry)`` rule): etcd's rule, derived instead of
  special-cased. To a follower in REPLICATE state with AppendEntries in flight the prev_index
  is ``next - 1``: if an AppendEntries was lost the heartbeat is rejected and the follower
  drops back to PROBE, so a lost message never stalls replication (etcd does the same from
  the heartbeat reply).
- A follower receiving AppendEntries whose prev_index is below its commit index skips the
  entries it has committed (they match the leader's by Leader Completeness) instead of
  checking them; etcd instead replies with its commit index and drops the message.
- Proposals and ReadIndex requests made between two ``ready()`` calls are sent in one batch
  by ``ready()``: one AppendEntries per follower for many proposals, one read round for many
  reads. A commit index that advanced is sent the same way: carried by the next
  AppendEntries with entries, or by an empty one at ``ready()`` to followers that can use it.
- Only granting a vote (or hearing the leader) restarts a follower's election timer; a
  RequestVote that merely raises our term does not (Figure 3.1; etcd restarts it), so a
  candidate with a stale log cannot keep postponing the election of one that can win.
- Steps may arrive between ``ready()`` and ``advance()`` (the runtime awaits fsync): entries
  handed out are remembered so they are not handed out twice, and a tail replaced in the
  meantime is simply not marked stable by the old Ready's ``advance``.
- ForwardRequest / ForwardResponse are routed by the runtime: ``step`` raises TypeError.
- Configuration changes take effect when their CONFIG entry is appended (4.1) and are rolled
  back if it is truncated; quorums always use the configuration in force. ``propose_config``
  is the raw, single-change-at-a-time primitive (also refused until a new leader committed
  an entry of its term); ``add_learner`` / ``promote_learner`` / ``remove_member`` add the
  membership rules (new servers as learners, promotion once caught up, one voter at a
  time). A server removed by an uncommitted change is still replicated to, so it normally
  sees its removal; nobody checks membership before answering a message (4.1).
- Compaction: the runtime compacts storage whenever it likes (``storage.compact``, up to
  an applied index); the core needs no notice, it reads ``first_index`` / ``term`` from
  storage each time. A follower that needs compacted entries moves to SNAPSHOT progress:
  the leader streams its current snapshot in ``snapshot_chunk_bytes`` chunks, at most
  ``snapshot_window`` unacknowledged, read from storage as they go out; a stall of
  ``snapshot_retry_ticks`` resends from the last acknowledged byte, a rejection from the
  offset the follower holds, and a newer snapshot in storage restarts the transfer at 0.
  The follower's acknowledgement of the install (``done``) moves it back to PROBE.
- Receiving a snapshot: chunks must continue what was received from the same leader, term
  and snapshot (else rejected, and the leader resends from what the follower holds); each
  accepted chunk goes to the runtime in ``Ready.snapshot_chunks`` and is acknowledged by
  that Ready's messages, i.e. once written. At the last chunk the core *restores* at once
  (etcd's unstable snapshot): the log becomes the snapshot, commit and configuration come
  from its meta, and storage is not read until ``advance`` of the Ready that installs it.
  A snapshot the log already holds (entry at meta.index with meta.term, or committed)
  needs no transfer: the follower commits up to it and says ``done``. A half-received
  snapshot is dropped on a term change (``Ready.snapshot_discard``) and by a restart.
"""

from __future__ import annotations

from typing import Any

import attrs

from raftkv.raft.config import RaftConfig
from raftkv.raft.errors import NotLeader
from raftkv.raft.log_storage import Compacted, LogStorage, Unavailable
from raftkv.raft.membership import (
    ConfigChangePending,
    ConfigHistory,
    check_removal_keeps_quorum,
    check_single_change,
    committed_index,
    decode_config,
    encode_config,
    quorum,
    with_learner,
    with_promoted,
    without_member,
)
from raftkv.raft.progress import Inflights, Progress, ProgressState
from raftkv.raft.raft_log import RaftLog
from raftkv.raft.read_only import ForwardedRead, LeaderReads, PendingRead
from raftkv.raft.ready import ReadState, Ready
from raftkv.raft.role import Role
from wire.raft import (
    CONFIG,
    MAX_TERM,
    NOOP,
    NORMAL,
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    ForwardRequest,
    ForwardResponse,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Member,
    PeerMessage,
    RaftMessage,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)


@attrs.define
class _Receive:
    """A snapshot being received: from whom, in which term, how many bytes so far."""

    meta: SnapshotMeta
    leader: int
    term: int
    received: int = 0
    idle: int = 0  # ticks since the last chunk


class SafetyViolation(RuntimeError):
    """An invariant that Raft guarantees was broken (e.g. a committed entry conflicts)."""


class RaftCore:
    def __init__(self, node_id: int, storage: LogStorage, config: RaftConfig, rng: Any) -> None:
        if node_id < 1:
            raise ValueError("node ids are integers >= 1")
        self._id = node_id
        self._cfg = config
        self._bugs = config.bugs
        self._rng = rng
        self._log = RaftLog(storage)
        hs, stored_config = storage.initial_state()
        snap_index = storage.first_index() - 1
        self._term = hs.term
        self._vote = hs.vote
        self._commit = min(max(hs.commit, snap_index), self._log.last_index())
        self._apply_emitted = snap_index  # committed entries handed out up to here
        self._prev_hs = hs  # the hard state storage holds (as far as we were told)
        self._configs = self._load_configs(stored_config)

        self._msgs: list[RaftMessage] = []
        self._read_states: list[ReadState] = []
        self._failed_reads: list[bytes] = []
        self._recv: _Receive | None = None  # follower: the snapshot being received
        self._snap_chunks: list[InstallSnapshot] = []  # accepted, for the next Ready
        self._snap_discard = False

        self._role = Role.FOLLOWER
        self._leader = 0
        self._leader_gone = 0  # a leader the runtime saw gone, until we hear a leader again
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = config.election_ticks
        self._votes: dict[int, bool] = {}
        self._progress: dict[int, Progress] = {}
        self._transferee = 0
        self._transfer_elapsed = 0
        self._reads = LeaderReads()
        self._read_rounds = 0  # heartbeat rounds opened for reads, over every term (INFO)
        self._committed_in_term = 0  # a term whose entry the commit index was seen at
        self._forwarded: list[ForwardedRead] = []
        self._unsent_reads: list[bytes] = []  # follower: reads for the next batch
        self._batch_ids = 0  # follower: the next batch's id (random base: see _flush_reads)
        self._bcast_pending = False  # leader: new entries to send at the next ready()
        # Leader: the commit index advanced past what some follower was told. It rides on
        # the next AppendEntries with entries; an empty one carries it at the next ready(),
        # or with ``lazy_commit`` once it is due (``_commit_due``: the next tick, a read
        # round, a follower's read released).
        self._commit_bcast = False
        self._commit_due = False  # leader: tell followers the commit index at next ready()
        self._reset(self._restart_term(hs))

    def _restart_term(self, hs: HardState) -> int:
        """The term to restart in: the stored term, or the last log entry's if that is higher.

        A crash can keep a prefix of one Ready's writes: the entries (written first, so that a
        durable commit index never points past entries that are not durable) without the hard
        state that follows them. The log then holds an entry of term T while the stored term
        is below T, and a node in that state would accept appends from a stale leader of an
        older term and overwrite an entry of a newer one (simulator seed 9100594). A node has
        seen term T if it holds an entry of term T, so it restarts in T. Clearing the vote
        (``_reset`` does, on a term change) is safe: a vote in T leaves only after a hard state
        of term T is durable, and then the stored term would be T. The first Ready persists
        the raised term (it differs from the stored hard state)."""
        return max(hs.term, self._log.last_term())

    # -- read-only properties --------------------------------------------------------------
    @property
    def id(self) -> int:
        return self._id

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> int:
        return self._vote

    @property
    def leader_id(self) -> int:
        return self._leader

    @property
    def election_elapsed(self) -> int:
        """Ticks since we last heard from the leader (a follower) or since the last
        CheckQuorum window began (a leader): readiness checks read it."""
        return self._election_elapsed

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def read_rounds(self) -> int:
        """Heartbeat rounds opened to confirm reads (reads per round: how well they batch)."""
        return self._read_rounds

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def last_term(self) -> int:
        return self._log.last_term()

    @property
    def cluster_config(self) -> ClusterConfig:
        return self._configs.current

    @property
    def voters(self) -> frozenset[int]:
        return self._configs.voters

    @property
    def known_members(self) -> dict[int, Member]:
        """Who this node exchanges messages with: the configuration in force plus members
        removed by a change that has not committed yet (id -> Member)."""
        return self._configs.known_members()

    @property
    def is_learner(self) -> bool:
        return self._id in self._configs.learners

    @property
    def transferee(self) -> int:
        """Target of the leadership transfer in progress (0: none)."""
        return self._transferee

    def progress(self, peer: int) -> Progress | None:
        """The leader's replication progress for ``peer`` (introspection: tests, metrics)."""
        return self._progress.get(peer) if self._role is Role.LEADER else None

    def log_term(self, index: int) -> int | None:
        """Term of entry ``index`` in this node's log (None if compacted or absent)."""
        return self._log.term_or_none(index)

    def entries_after(self, index: int) -> list[Entry] | None:
        """This node's log entries after ``index``, to its last (None if any of them is
        compacted or behind a snapshot being installed): read-only introspection."""
        try:
            return self._log.entries(index + 1, self._log.last_index() + 1)
        except (Compacted, Unavailable):
            return None

    # -- inputs ----------------------------------------------------------------------------
    def tick(self) -> None:
        """One logical clock tick."""
        if self._role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()
            self._tick_receive()
        self._tick_forwarded_reads()

    def heartbeat_late(self, ticks: int) -> None:
        """The runtime's ticks came ``ticks`` intervals late (its loop was starved or busy):
        a leader counts them toward its next heartbeat, and only there, so the tick that
        follows sends it if a heartbeat interval has passed in real time. Ticks are not
        caught up otherwise (a busy node slows its election and check-quorum clocks rather
        than burst into an election), but the followers' clocks run on: a leader starved
        on shared cores ticked at a third of their rate, so its heartbeats came every
        ~150 ms against their 150-300 ms election timeout, and it lost its term (harden10,
        a metrics-port flood). An early heartbeat is always safe."""
        if self._role is Role.LEADER and ticks > 0:
            self._heartbeat_elapsed = max(self._heartbeat_elapsed, min(
                self._heartbeat_elapsed + ticks, self._cfg.heartbeat_ticks - 1))

    def campaign(self) -> None:
        """Start an election now (with PreVote if enabled). No-op for leaders and non-voters."""
        if self._role is not Role.LEADER:
            self._hup(transfer=False)

    def leader_activity(self, from_id: int) -> None:
        """The runtime saw bytes of a message from ``from_id`` that cannot be stepped yet (a
        large frame still arriving or being decoded). If ``from_id`` is the leader of our
        current term, that is word from it: the election timer restarts, as a heartbeat
        would restart it. Nothing else changes (no term, vote, log or commit: a partial
        frame proves only that the leader's process is sending to us).

        Why (issue 12): an 8 MiB AppendEntries took 50-250 ms to arrive and decode on a
        loaded 2-core machine, longer than the 150 ms election timeout, and a follower
        campaigned against a live leader that was busy sending it entries."""
        if self._role is Role.FOLLOWER and from_id and from_id == self._leader:
            self._election_elapsed = 0

    def leader_unreachable(self, from_id: int) -> None:
        """The runtime has evidence that the process of ``from_id`` is gone (its connection
        to us closed and a new dial to it was refused: nothing listens at its peer address,
        as after a crash or a kill -9 on a host that stays up). If it is our leader, we stop
        following it and campaign soon, instead of waiting out the rest of the election
        timeout: the survivor with the lowest id one tick from now, the next one a heartbeat
        interval later, and so on. The survivors all see the same loss at about the same
        time; drawn at random, their delays let two campaign together often enough (a split
        vote costs a whole election timeout) and cost 40-90 ms on average (measured); in id
        order the first goes at once and the others stand by in case it cannot win.

        Only timers and the leader hint change, never a term or a vote: Raft's safety does
        not depend on either, and a false alarm costs at most an election, which PreVote
        keeps from happening while a quorum still hears the leader (the lease). Forgetting
        the leader also drops our lease, so a survivor's pre-vote is granted at once. A
        machine that crashes, or a partition, closes nothing: those still take the
        election timeout."""
        if self._role is not Role.FOLLOWER or not from_id or from_id != self._leader:
            return
        self._leader = 0
        self._leader_gone = from_id
        self._fail_forwarded_reads()  # they went to that leader: no answer is coming
        soon = self._election_elapsed + self._survivor_delay()
        self._randomized_timeout = min(self._randomized_timeout, soon)

    def _survivor_delay(self) -> int:
        """Ticks until this survivor of a gone leader campaigns: one for the lowest id, a
        heartbeat interval more for each id below ours."""
        survivors = sorted(v for v in self.voters if v != self._leader_gone)
        rank = survivors.index(self._id) if self._id in survivors else len(survivors)
        return 1 + rank * self._cfg.heartbeat_ticks

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command; returns its (index, term). It is committed if an entry with that
        index *and term* is later applied; another term at that index means it was lost."""
        # ``_append_as_leader`` of a NORMAL entry, its two calls and the check's inlined:
        # a leader proposes every client write here (~0.2 us of each, p16).
        if self._role is not Role.LEADER or self._transferee:
            self._check_can_propose()  # (raises NotLeader)
        e = self._log.append_next(self._term, NORMAL, data)
        self._bcast_pending = True
        return e.index, e.term

    def propose_config(self, config: ClusterConfig) -> tuple[int, int]:
        """Append a CONFIG entry (in force at once). One change at a time: raises
        ConfigChangePending (a ValueError) while the previous configuration is uncommitted,
        or before this leader committed an entry of its own term: the fix for the
        single-server change bug (Ongaro, raft-dev 2015) - a change proposed earlier could
        otherwise be overwritten by a leader that never saw it, after ours committed.
        No membership checks here; the methods below make them."""
        self._check_can_propose()
        if self._configs.index > self._commit:
            raise ConfigChangePending(
                f"a configuration change (index {self._configs.index}) is still uncommitted;"
                " retry once it commits"
            )
        if self._log.term_or_none(self._commit) != self._term:
            raise ConfigChangePending(
                "the leader has not committed an entry of its term yet; retry shortly"
            )
        e = self._append_as_leader(CONFIG, encode_config(config))
        return e.index, e.term

    # -- membership (one server at a time; new servers join as learners) ---------------------
    @property
    def config_pending(self) -> bool:
        """A CONFIG entry is in force but not committed yet."""
        return self._configs.index > self._commit

    def add_learner(self, node_id: int, peer_addr: str, promote: bool = False) -> tuple[int, int]:
        """Add a non-voting member that receives the log. ``promote``: ask leaders to make it
        a voter once caught up (see ``learners_to_promote``)."""
        self._check_can_propose()
        return self.propose_config(
            with_learner(self.cluster_config, node_id, peer_addr, promote)
        )

    def promote_learner(self, node_id: int, max_lag: int) -> tuple[int, int]:
        """Make learner ``node_id`` a voter, if it holds the log to within ``max_lag``
        entries: a lagging new voter could stall commits until it catches up (4.2.1)."""
        self._check_can_propose()
        new = with_promoted(self.cluster_config, node_id)
        if not self._caught_up(node_id, max_lag):
            raise ConfigChangePending(self._not_caught_up(node_id, max_lag))
        return self.propose_config(new)

    def _not_caught_up(self, node_id: int, max_lag: int) -> str:
        """Why ``promote_learner`` refuses. A learner that acknowledged nothing is refused
        whatever the lag; "has 0 of 57 entries, must be within 100" contradicted itself and
        hid that the learner never answered (not started, or cannot reach us) (attack21)."""
        pr = self._progress.get(node_id)
        if pr is None or pr.match == 0:
            if pr is not None and pr.recent_active:
                return (f"learner {node_id} is not caught up (it answers, but holds none of "
                        f"the leader's {self.last_index} entries yet); retry later")
            return (f"learner {node_id} is not caught up: it has not answered the leader "
                    "(is it running, and can it reach its peers?); retry once it does")
        return (f"learner {node_id} is not caught up (has {pr.match} of {self.last_index}"
                f" entries, must be within {max_lag}); retry later")

    def remove_member(self, node_id: int, strict: bool = False) -> tuple[int, int]:
        """Remove a voter or a learner. Removing the leader itself is allowed: it leads
        (without counting itself) until the change commits, then steps down (4.2.2).
        ``strict`` (the runtime's RAFT REMOVENODE; etcd's --strict-reconfig-check): also
        refuse, with ConfigChangePending, a removal after which the voters this leader has
        heard from lately are no quorum of those left (``check_removal_keeps_quorum``)."""
        self._check_can_propose()
        new = without_member(self.cluster_config, node_id)
        check_single_change(self.cluster_config, new)
        if strict:
            check_removal_keeps_quorum(node_id, new, self._heard_lately())
        return self.propose_config(new)

    def _heard_lately(self) -> frozenset[int]:
        """Leader: itself and the peers it heard from in this CheckQuorum period or the
        previous one (a period has just begun when every flag was reset)."""
        return frozenset(peer for peer, pr in self._progress.items()
                         if peer == self._id or pr.recent_active or pr.active_before)

    def learners_to_promote(self, max_lag: int) -> list[int]:
        """Leader: learners marked ``promote`` that are caught up (to within ``max_lag``)."""
        if self._role is not Role.LEADER:
            return []
        return [
            m.id
            for m in self.cluster_config.members
            if m.learner and m.promote and self._caught_up(m.id, max_lag)
        ]

    def _caught_up(self, node_id: int, max_lag: int) -> bool:
        pr = self._progress.get(node_id)
        return (
            pr is not None
            and pr.match > 0
            and pr.match >= self._log.last_index() - max_lag
        )

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read; the answer is a ReadState(ctx, index) or ctx in
        failed_reads of a later Ready. ``ctx`` must be unique among pending reads."""
        if self._role is Role.LEADER:
            self._leader_read(PendingRead(ctx, 0))
        elif self._leader and self._role is Role.FOLLOWER:
            self._unsent_reads.append(ctx)  # one request for all of them at ready()
        else:
            raise NotLeader(0, "no leader known")

    def transfer_leadership(self, target: int) -> None:
        """Hand leadership to ``target``: stop taking proposals, bring it up to date, then send
        TimeoutNow. Aborted after an election timeout. ``target == id`` cancels a transfer."""
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader)
        if target == self._id:
            self._transferee = 0
            return
        if target not in self.voters:
            raise ValueError(f"node {target} is not a voter")
        if self._transferee == target:
            return
        self._transferee = target
        self._transfer_elapsed = 0
        pr = self._progress[target]
        if pr.match == self._log.last_index():
            self._send(TimeoutNow(self._term, self._id, target))
        elif not self._send_appends(target):
            self._send_heartbeat(target)  # find out where it stands (a lost append, say)

    def step(self, m: PeerMessage) -> None:
        """Handle one peer message addressed to this node."""
        if isinstance(m, ForwardRequest | ForwardResponse):
            raise TypeError(f"{type(m).__name__} is routed by the runtime, not the raft core")
        if not isinstance(m, RAFT_MESSAGE_TYPES):
            raise TypeError(f"not a raft message: {m!r}")
        if m.dst != self._id:
            raise ValueError(f"message for node {m.dst} stepped into node {self._id}")
        if m.term > MAX_TERM:
            return  # malformed (the runtime refuses it on receipt): term + 1 must stay valid
        if m.term > self._term:
            if isinstance(m, RequestVote) and not (m.transfer and m.term == self._term + 1):
                # Leader lease: we heard from a live leader within the election timeout, so
                # a candidate (a rejoining partitioned node, say) gets no answer. Pre-votes
                # always obey it (dissertation 9.6); real votes with CheckQuorum (etcd).
                # The transfer flag bypasses it only one term ahead of ours: a genuine
                # transfer target campaigns at its leader's term + 1, which is ours. etcd
                # (campaignTransfer) trusts the flag at any term; unauthenticated, a forged
                # or buggy flag could then drag every node to an arbitrary term. Here it
                # can do no more than a real transfer does: start one election.
                # A leader is in its own lease while it leads: its tick counter runs to
                # check_quorum_ticks, past one election timeout, and CheckQuorum is what
                # ends a leader that lost its quorum.
                heard_leader = self._role is Role.LEADER or (
                    self._leader != 0 and self._election_elapsed < self._cfg.election_ticks
                )
                if heard_leader and (m.pre_vote or self._cfg.check_quorum):
                    return
            if isinstance(m, RequestVote) and m.pre_vote:
                pass  # a pre-vote changes nobody's term
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                pass  # our own proposed term echoed back; we bump it when we win
            elif isinstance(m, RequestVote) and self._role is not Role.LEADER:
                # Adopt the term, but keep our election timer running: only granting the
                # vote resets it (Figure 3.1), so candidates with stale logs cannot keep
                # postponing the election of a node that has the log to win it.
                elapsed, timeout = self._election_elapsed, self._randomized_timeout
                self._become_follower(m.term, 0)
                self._election_elapsed, self._randomized_timeout = elapsed, timeout
            else:
                from_leader = isinstance(m, AppendEntries | InstallSnapshot)
                self._become_follower(m.term, m.src if from_leader else 0)
        elif m.term < self._term:
            stale_ok = "no_term_check_on_append" in self._bugs and isinstance(m, AppendEntries)
            if not stale_ok:
                self._reply_stale(m)
                return
        if self._role is Role.LEADER:
            self._step_leader(m)
        else:
            self._step_not_leader(m)

    # -- outputs ---------------------------------------------------------------------------
    def has_ready(self) -> bool:
        leader_work = self._role is Role.LEADER and bool(
            self._bcast_pending or self._commit_due or self._reads.unassigned
            or (self._commit_bcast and not self._cfg.lazy_commit)
        )
        return bool(
            leader_work
            or self._msgs
            or self._unsent_reads
            or self._read_states
            or self._failed_reads
            or self._snap_chunks
            or self._snap_discard
            or self._log.has_unemitted()
            or self._hard_state() != self._prev_hs
            or self._apply_emitted < min(self._commit, self._log.last_index())
        )

    def ready(self) -> Ready:
        """Collect the pending work. Call ``advance`` with it once it has been handled."""
        if self._role is Role.LEADER:
            self._flush_leader()
        else:
            self._flush_reads()
        entries = self._log.take_unemitted()
        hs = self._hard_state()
        committed: list[Entry] = []
        hi = min(self._commit, self._log.last_index())
        if self._apply_emitted < hi:
            committed = self._log.entries(
                self._apply_emitted + 1, hi + 1, self._cfg.max_apply_bytes
            )
            self._apply_emitted = committed[-1].index
        vote_changed = (hs.term, hs.vote) != (self._prev_hs.term, self._prev_hs.vote)
        must_sync = bool(entries) or vote_changed
        snapshot_work = bool(self._snap_chunks) or self._snap_discard
        rd = Ready(
            messages=self._msgs,
            entries=entries,
            hard_state=hs if hs != self._prev_hs else None,
            committed_entries=committed,
            read_states=self._read_states,
            failed_reads=self._failed_reads,
            must_sync=must_sync,
            send_before_sync=(
                must_sync and self._role is Role.LEADER and not vote_changed and not snapshot_work
            ),
            snapshot_chunks=self._snap_chunks,
            snapshot_discard=self._snap_discard,
        )
        self._msgs, self._read_states, self._failed_reads = [], [], []
        self._snap_chunks, self._snap_discard = [], False
        return rd

    def take_early(self) -> list[RaftMessage]:
        """Messages that may leave *now*, even while the writes of a Ready already handed out
        are still being made durable (etcd-io/raft's ``msgs`` as against
        ``msgsAfterAppend``); they are no longer part of the next Ready. Optional: a runtime
        that never calls it sends everything through ``ready()`` as before.

        Why: a Ready's fsync may take a long time (an 8 MiB entry: 50-200 ms on a loaded
        disk). Without this, a leader sends no heartbeat and a follower answers none
        meanwhile, and with default timeouts the cluster holds an election (issue 12).

        Which: nothing unless this node's term and vote are durable (``advance`` of the
        Ready that changed them has happened) and no received snapshot awaits its install.
        Then a leader's messages (as ``Ready.send_before_sync``: heartbeats, appends, read
        answers; none claims anything about its own disk), and a follower's AppendEntries
        replies that promise nothing beyond what is durable: a rejection, or a success whose
        ``match_index`` is at most ``stable_index``. Heartbeat replies are built that way
        (``_handle_append``). Anything else (a vote, an ack of entries still being written,
        a snapshot acknowledgement) stays for the Ready after the fsync, as before.
        """
        if not self._msgs or self._log.pending is not None:
            return []
        hs = self._hard_state()
        if (hs.term, hs.vote) != (self._prev_hs.term, self._prev_hs.vote):
            return []
        if self._role is Role.LEADER:
            early, self._msgs = self._msgs, []
            return early
        stable = self._log.stable_index()
        early, keep = [], []
        for m in self._msgs:
            if (type(m) is AppendEntriesResponse and m.term == self._term
                    and (not m.success or m.match_index <= stable)):
                early.append(m)
            else:
                keep.append(m)
        self._msgs = keep
        return early

    def advance(self, rd: Ready) -> None:
        """The runtime persisted ``rd``'s entries and hard state and sent its messages."""
        if rd.hard_state is not None:
            self._prev_hs = rd.hard_state
        installed = rd.installed_snapshot
        if installed is not None:
            # Storage holds the snapshot now (and, by Log Matching, no suffix: the core only
            # installs a snapshot its log does not match), so it is read again from here on.
            self._log.installed(installed)
        if rd.entries:
            last = rd.entries[-1]
            self._log.stable_to(last.index, last.term)
            if self._role is Role.LEADER:
                me = self._progress.get(self._id)
                if me is not None and me.maybe_update(self._log.stable_index()):
                    self._maybe_commit()

    # -- roles -----------------------------------------------------------------------------
    def _reset(self, term: int) -> None:
        if term != self._term:
            self._term = term
            self._vote = 0
        self._leader = 0
        self._heartbeat_elapsed = 0
        self._restart_election_timer()
        self._votes = {}
        self._transferee = 0
        self._bcast_pending = self._commit_bcast = self._commit_due = False
        self._fail_leader_reads()
        self._fail_forwarded_reads()
        self._discard_receive()  # a new term's leader starts its transfer over

    def _become_follower(self, term: int, leader: int) -> None:
        self._reset(term)
        self._role = Role.FOLLOWER
        self._leader = leader
        self._progress = {}

    def _become_pre_candidate(self) -> None:
        # Term and vote stay as they are: a pre-candidate disturbs nobody.
        self._reset(self._term)
        self._role = Role.PRE_CANDIDATE
        self._progress = {}

    def _become_candidate(self) -> None:
        self._reset(self._term + 1)
        self._role = Role.CANDIDATE
        self._vote = self._id
        self._progress = {}

    def _become_leader(self) -> None:
        self._reset(self._term)
        self._role = Role.LEADER
        self._leader_gone = 0
        self._leader = self._id
        self._progress = {}
        self._reads = LeaderReads()
        self._sync_progress()
        me = self._progress[self._id]
        me.match = self._log.stable_index()
        me.recent_active = True
        # The no-op: entries of earlier terms commit only underneath a current-term entry.
        self._append_entry(NOOP, b"")

    def _promotable(self) -> bool:
        return self._id in self.voters

    def _hup(self, transfer: bool) -> None:
        if not self._promotable():
            return
        self._campaign(pre=self._cfg.pre_vote and not transfer, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            term = self._term + 1
            if self._leader_gone:
                # A survivor that has not seen the leader go yet still holds its lease and
                # ignores our pre-vote; we ask again every heartbeat interval instead of
                # after a random full timeout (a 385 ms failover: one survivor's sighting
                # came late). A pre-vote changes no term, so asking often disturbs nobody.
                self._randomized_timeout = self._cfg.heartbeat_ticks
        else:
            self._become_candidate()
            term = self._term
        self._votes = {self._id: True}
        if self._poll() is True:  # a single voter wins at once
            if pre:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
            return
        last = self._log.last_index()
        last_term = self._log.last_term()
        for v in sorted(self.voters - {self._id}):
            self._send(RequestVote(term, self._id, v, last, last_term, pre, transfer))

    def _poll(self) -> bool | None:
        """True: won, False: lost, None: undecided (counting only current voters)."""
        vs = self.voters
        granted = sum(1 for v in vs if self._votes.get(v) is True)
        rejected = sum(1 for v in vs if self._votes.get(v) is False)
        q = quorum(len(vs))
        if granted >= q:
            return True
        if rejected > len(vs) - q:
            return False
        return None

    def _restart_election_timer(self) -> None:
        self._election_elapsed = 0
        self._randomized_timeout = self._rng.randrange(
            self._cfg.election_ticks, 2 * self._cfg.election_ticks
        )

    # -- ticks -----------------------------------------------------------------------------
    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._promotable() and self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            self._hup(transfer=False)

    def _tick_leader(self) -> None:
        if self._commit_bcast:
            self._commit_due = True  # no append carried it for a tick: an empty one does
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._transferee:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self._cfg.election_ticks:
                self._transferee = 0  # target did not take over in time: resume
        if self._election_elapsed >= self._cfg.check_quorum_ticks:
            self._election_elapsed = 0
            vs = self.voters
            active = sum(
                1
                for v in vs
                if v == self._id or (v in self._progress and self._progress[v].recent_active)
            )
            for peer, pr in self._progress.items():
                pr.active_before = pr.recent_active
                pr.recent_active = peer == self._id
            if self._cfg.check_quorum and active < quorum(len(vs)):
                self._become_follower(self._term, 0)  # lost our quorum: stop leading
                return
        reads = self._reads
        if self._heartbeat_elapsed >= self._cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            for peer in self._peers():
                pr = self._progress[peer]
                if pr.state is ProgressState.PROBE:
                    pr.probe_sent = False  # the next reply may send the probe again
                self._send_heartbeat(peer)
            reads.told_all = reads.seq
        elif reads.overdue():  # a read round its chosen peers left unanswered for a tick
            for peer in self._peers():
                self._send_heartbeat(peer)
            reads.told_all = reads.seq
        self._tick_snapshots()

    def _tick_forwarded_reads(self) -> None:
        if not self._forwarded:
            return
        keep = []
        for r in self._forwarded:
            r.age += 1
            if r.age >= self._cfg.read_timeout_ticks:
                self._failed_reads.extend(r.ctxs)
            else:
                keep.append(r)
        self._forwarded = keep

    # -- message handling ------------------------------------------------------------------
    def _reply_stale(self, m: RaftMessage) -> None:
        """A message from an older term. Tell a deposed leader or a candidate our term."""
        if isinstance(m, AppendEntries):
            if self._cfg.check_quorum or self._cfg.pre_vote:
                # seq=0: this answers no read round. The old leader may lead our term by
                # the time it arrives, and its new rounds count from 0 again: echoing the
                # old round number would confirm them without a quorum (a stale read;
                # found by the simulator, seed 8706).
                self._send(
                    AppendEntriesResponse(self._term, self._id, m.src, False, m.prev_index)
                )
        elif isinstance(m, RequestVote):
            # Rejected, with our term (Raft 5.1), pre-vote or not. Ignoring a stale real
            # vote can stall elections for good: after a membership change, a candidate that
            # only we can elect, and that we never otherwise talk to (it is not a voter in
            # the configuration our shorter log knows), kept campaigning one term behind us
            # (simulator seed 30002979, PreVote off).
            self._send(RequestVoteResponse(self._term, self._id, m.src, False, m.pre_vote))
        elif isinstance(m, ReadIndexRequest):
            self._send(ReadIndexResponse(self._term, self._id, m.src, m.ctx, 0, False))
        elif isinstance(m, InstallSnapshot) and (self._cfg.check_quorum or self._cfg.pre_vote):
            self._send(
                InstallSnapshotResponse(self._term, self._id, m.src, m.meta.index, 0, reject=True)
            )

    def _step_leader(self, m: RaftMessage) -> None:
        pr = self._progress.get(m.src)
        if pr is not None and m.term == self._term:
            pr.recent_active = True
        if isinstance(m, AppendEntriesResponse):
            if pr is not None:
                self._handle_append_response(pr, m)
        elif isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif isinstance(m, ReadIndexRequest):
            self._leader_read(PendingRead(m.ctx, m.src))
        elif isinstance(m, InstallSnapshotResponse) and pr is not None:
            self._handle_snapshot_response(pr, m)
        # Other messages (a stale-bug AppendEntries, late votes, TimeoutNow) mean nothing here.

    def _step_not_leader(self, m: RaftMessage) -> None:
        if isinstance(m, AppendEntries):
            if self._role is not Role.FOLLOWER:
                self._become_follower(self._term, m.src)
            self._handle_append(m)
        elif isinstance(m, InstallSnapshot):
            if self._role is not Role.FOLLOWER:
                self._become_follower(self._term, m.src)
            self._handle_snapshot(m)
        elif isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif isinstance(m, RequestVoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, TimeoutNow):
            # Only our current leader may hand leadership over (the vote requests we then
            # send bypass the other voters' leader lease).
            if self._role is Role.FOLLOWER and m.src == self._leader:
                self._hup(transfer=True)
        elif isinstance(m, ReadIndexRequest):
            self._send(ReadIndexResponse(self._term, self._id, m.src, m.ctx, 0, False))
        elif isinstance(m, ReadIndexResponse):
            self._handle_read_response(m)

    # -- elections -------------------------------------------------------------------------
    def _handle_vote_request(self, m: RequestVote) -> None:
        if m.pre_vote:
            # Would we vote in term m.term? The lease was checked in step().
            can_vote = m.term > self._term
        else:
            # m.term == our term here; one vote per term, none while we follow a leader.
            can_vote = self._vote == m.src or (self._vote == 0 and self._leader == 0)
        up_to_date = self._log.is_up_to_date(m.last_log_index, m.last_log_term)
        up_to_date = up_to_date or "vote_without_log_check" in self._bugs
        if can_vote and up_to_date:
            if m.pre_vote:
                self._send(RequestVoteResponse(m.term, self._id, m.src, True, True))
            else:
                self._vote = m.src  # persisted via the Ready's hard state before the reply
                self._election_elapsed = 0
                self._send(RequestVoteResponse(self._term, self._id, m.src, True, False))
        else:
            if not m.pre_vote and self._role is Role.CANDIDATE and up_to_date:
                # A rival candidate of our term whose log is at least as up to date: we
                # spent our vote on ourselves, but we back off (a fresh election timer from
                # now) so it can campaign first next round. Without PreVote, two candidates
                # whose timers keep firing in the same order can both bump the term forever
                # while the one that can win always asks the other a term too late: its
                # lead is a zero-drift random walk (simulator seed 50010599, divergent
                # uncommitted configurations). Resetting only our own timer is always safe,
                # and a stale-log candidate still cannot postpone a better one.
                self._restart_election_timer()
                if self._leader_gone:
                    # Survivors of a gone leader that campaigned together (their sightings
                    # of the refused port differ by up to a dial retry) split the vote:
                    # they retry in id order instead of after a random full timeout, which
                    # cost a kill -9 failover 180 ms more, once in ~20 kills (issue 15).
                    self._randomized_timeout = self._survivor_delay()
            self._send(RequestVoteResponse(self._term, self._id, m.src, False, m.pre_vote))

    def _handle_vote_response(self, m: RequestVoteResponse) -> None:
        if m.pre_vote:
            if self._role is not Role.PRE_CANDIDATE:
                return
            if m.term != (self._term + 1 if m.granted else self._term):
                return  # a reply to an earlier pre-campaign
        elif self._role is not Role.CANDIDATE or m.term != self._term:
            return
        self._votes.setdefault(m.src, m.granted)
        result = self._poll()
        if result is True:
            if self._role is Role.PRE_CANDIDATE:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
        elif result is False:
            self._become_follower(self._term, 0)

    # -- replication: follower side --------------------------------------------------------
    def _heard_leader(self, leader: int) -> None:
        self._election_elapsed = 0
        self._leader_gone = 0
        if self._randomized_timeout < self._cfg.election_ticks:
            # A leader_unreachable hint shortened our timer and the leader turned out alive
            # (or another took over): back to a full timeout, or we would campaign a few
            # ticks after every heartbeat.
            self._restart_election_timer()
        if self._leader != leader:
            if self._leader:
                self._fail_forwarded_reads()
            self._leader = leader

    def _handle_append(self, m: AppendEntries) -> None:
        self._heard_leader(m.src)
        prev, ents = m.prev_index, m.entries
        if ents and (ents[0].index != prev + 1 or ents[-1].index != prev + len(ents)):
            return  # malformed: entries must directly follow prev_index
        if prev < self._commit:
            # Everything up to our commit index matches the leader's log (Leader
            # Completeness): skip those entries rather than compare them.
            skip = self._commit - prev
            if skip >= len(ents):
                self._reply_append(m, True, self._commit)
                return
            ents = ents[skip:]
            prev = self._commit
        elif not self._log.match_term(prev, m.prev_term):
            self._reject_append(m)
            return
        conflict = self._log.find_conflict(ents)
        if conflict and conflict <= self._commit:
            raise SafetyViolation(f"entry {conflict} conflicts but is committed")
        if "truncate_matching_suffix" in self._bugs and ents:
            conflict = ents[0].index
        if conflict:
            self._append_from_leader(list(ents[conflict - ents[0].index :]))
        last_new = prev + len(ents)
        self._commit_to(min(m.commit, last_new))
        self._reply_append(m, True, last_new)

    def _reject_append(self, m: AppendEntries) -> None:
        last = self._log.last_index()
        if m.prev_index > last:
            hint_index, hint_term = last + 1, 0
        else:
            hint_term = self._log.term(m.prev_index)
            floor = max(self._commit + 1, self._log.first_index())
            hint_index = self._log.first_index_of_term(m.prev_index, floor)
        self._send(
            AppendEntriesResponse(
                self._term, self._id, m.src, False, m.prev_index, hint_index, hint_term, m.seq
            )
        )

    def _reply_append(self, m: AppendEntries, success: bool, match: int) -> None:
        if success and not m.entries:
            # A heartbeat's reply claims only what is durable, so it may leave while a write
            # is still in flight (take_early) and the leader hears from us whatever our fsync
            # takes. The append that brought newer entries gets its own full ack.
            match = min(match, self._log.stable_index())
        self._send(AppendEntriesResponse(self._term, self._id, m.src, success, match, seq=m.seq))

    def _append_from_leader(self, ents: list[Entry]) -> None:
        first = ents[0].index
        if first <= self._log.last_index():
            # Truncated CONFIG entries put the previous configuration back in force.
            self._configs.truncate_from(first)
            # An ack still queued for entries this removes would claim, once sent after the
            # next fsync, entries that are never written: an older term's leader could count
            # it toward a commit (the simulator, seed 1883: a term-2 ack up to 247 queued,
            # then a term-3 append truncated from 244). Dropping an ack is always safe.
            self._msgs = [m for m in self._msgs
                          if not (type(m) is AppendEntriesResponse and m.success
                                  and m.match_index >= first)]
        self._log.append(ents)
        for e in ents:
            if e.kind == CONFIG:
                self._configs.push(e.index, decode_config(e.data))

    def _commit_to(self, index: int) -> None:
        if index <= self._commit:
            return
        self._commit = index
        superseded = self._configs.compact_to(index)
        if self._role is not Role.LEADER:
            return
        if superseded:
            self._sync_progress()  # stop replicating to servers whose removal committed
        self._commit_bcast = True
        if self._reads.waiting_commit and self._log.term_or_none(index) == self._term:
            self._reads.release_waiting()
        if self._id not in self.voters and index >= self._configs.index:
            # Removed from the cluster and the removal is committed: step down (4.2.2), but
            # first tell the others it committed.
            for peer in self._peers():
                if self._progress[peer].can_bump_commit(index):
                    self._send_heartbeat(peer)
            self._become_follower(self._term, 0)

    # -- replication: leader side ----------------------------------------------------------
    def _check_can_propose(self) -> None:
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader)
        if self._transferee:
            raise NotLeader(0, "leadership transfer in progress")

    def _append_as_leader(self, kind: int, data: bytes) -> Entry:
        self._check_can_propose()
        return self._append_entry(kind, data)

    def _append_entry(self, kind: int, data: bytes) -> Entry:
        e = self._log.append_next(self._term, kind, data)
        self._bcast_pending = True
        if kind == CONFIG:
            self._configs.push(e.index, decode_config(data))
            self._sync_progress(e.index)  # a new member is probed from this entry back
            self._maybe_commit()
        return e

    def _sync_progress(self, nxt: int = 0) -> None:
        """Track exactly the members of the configuration in force (and ourselves); new
        ones start at ``nxt`` (default: after our last entry)."""
        members = self._configs.known_members().keys() | {self._id}
        nxt = nxt or self._log.last_index() + 1
        for peer in members - self._progress.keys():
            self._progress[peer] = Progress(0, nxt, Inflights(self._cfg.max_inflight))
        for peer in self._progress.keys() - members:
            del self._progress[peer]
        if self._transferee and self._transferee not in self.voters:
            self._transferee = 0

    def _peers(self) -> list[int]:
        return [p for p in self._progress if p != self._id]

    def _maybe_commit(self) -> None:
        match = {peer: pr.match for peer, pr in self._progress.items()}
        index = committed_index(self.voters, match)
        if index <= self._commit:
            return
        # Only an entry of the current term commits by counting replicas (5.4.2, Figure 8).
        if self._log.term(index) == self._term or "commit_previous_term" in self._bugs:
            self._commit_to(index)

    def _send_appends(self, peer: int) -> bool:
        """Send as many AppendEntries as flow control allows; True if any went out."""
        sent = False
        while self._send_append(peer):
            sent = True
        return sent

    def _send_append(self, peer: int) -> bool:
        pr = self._progress[peer]
        last = self._log.last_index()
        if pr.paused() or pr.next > last:
            return False
        prev = pr.next - 1
        try:
            prev_term = self._log.term(prev)
            ents = self._log.entries(pr.next, last + 1, self._cfg.max_batch_bytes)
        except Compacted:
            self._send_snapshot(peer)
            return False
        self._send(
            AppendEntries(
                self._term,
                self._id,
                peer,
                prev,
                prev_term,
                tuple(ents),
                self._commit,
                self._reads.seq,
            )
        )
        pr.sent_commit = max(pr.sent_commit, min(self._commit, ents[-1].index))
        pr.sent_entries(ents[-1].index)
        return pr.state is ProgressState.REPLICATE

    def _send_heartbeat(self, peer: int) -> None:
        pr = self._progress[peer]
        prev = pr.match
        if pr.state is ProgressState.REPLICATE and pr.next - 1 > pr.match:
            prev = pr.next - 1  # rejected if an AppendEntries in flight was lost
        prev_term = self._log.term_or_none(prev)
        if prev_term is None and pr.state is ProgressState.REPLICATE:
            # All in flight is compacted: check the follower against our snapshot instead.
            # Lacking it, it rejects, which drops it to PROBE and so to a snapshot; with
            # prev = 0 it would accept and its lost appends would stall it for good.
            prev = self._log.first_index() - 1
            prev_term = self._log.term(prev)
        elif prev_term is None:
            prev, prev_term = 0, 0  # compacted: below any follower's commit index
            # Such a heartbeat proves no entry, so it cannot raise the follower's commit:
            # count that commit as told, or every reply would trigger another heartbeat
            # (a storm with two such followers; found by the simulator, seed 566).
            pr.sent_commit = max(pr.sent_commit, min(self._commit, pr.match))
        self._send(
            AppendEntries(
                self._term, self._id, peer, prev, prev_term, (), self._commit, self._reads.seq
            )
        )
        pr.sent_commit = max(pr.sent_commit, min(self._commit, prev))

    def _handle_append_response(self, pr: Progress, m: AppendEntriesResponse) -> None:
        if pr.acked_seq < m.seq <= self._reads.seq:  # a later round is not ours: not an ack
            pr.acked_seq = m.seq
            self._maybe_confirm_reads()
        if not m.success:
            if self._back_off(pr, m):
                self._send_appends(m.src)
            return
        if m.match_index > self._log.last_index():
            return  # cannot be a reply to us
        if pr.maybe_update(m.match_index):
            if pr.state is ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
                pr.become_probe()
            if m.src in self.voters:
                self._maybe_commit()
            if self._role is not Role.LEADER:
                return
            if m.src == self._transferee and pr.match == self._log.last_index():
                self._send(TimeoutNow(self._term, self._id, m.src))
        # A reply that moves nothing (late, duplicated, a heartbeat's) does not unpause a
        # probe: were each answered with a new probe, every message in flight would breed
        # another, and a duplicating network would grow them without end (a message storm;
        # found by the simulator, seeds 6392, 9188, 9607). A lost probe goes again after
        # the next heartbeat instead (see _tick_leader).
        if not self._send_appends(m.src) and pr.can_bump_commit(self._commit):
            self._commit_bcast = True  # it may apply more: tell it at ready() unless an append
            # with new entries (which carries the commit index) goes first

    def _back_off(self, pr: Progress, m: AppendEntriesResponse) -> bool:
        """Move ``next`` back after a rejection; False if the rejection is out of date."""
        rejected = m.match_index
        if pr.state is ProgressState.REPLICATE:
            if rejected <= pr.match:
                return False
            pr.become_probe()
        elif pr.state is ProgressState.PROBE:
            if rejected != pr.next - 1:
                return False
        else:
            return False
        hint = m.conflict_index
        if m.conflict_term:
            j = self._log.last_index_with_term_at_most(m.conflict_term, rejected)
            if j is not None and self._log.term(j) == m.conflict_term:
                hint = j + 1  # we have that term: resume right after our last entry of it
        pr.next = max(pr.match + 1, min(hint, rejected))
        pr.probe_sent = False
        return True

    # -- snapshots: follower side -----------------------------------------------------------
    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        self._heard_leader(m.src)
        meta = m.meta
        end = m.offset + len(m.data)
        if meta.index <= self._commit or self._log.match_term(meta.index, meta.term):
            # Our log already holds what it covers (committed entries match the leader's; an
            # entry with the snapshot's index and term has the same prefix): no transfer.
            self._commit_to(max(self._commit, meta.index))
            if self._recv is not None and self._recv.meta.index <= self._commit:
                self._discard_receive()
            self._reply_snapshot(m, end, done=True)
            return
        if self._log.pending is not None:
            return  # still installing an older one; the leader resends after a stall
        r = self._recv
        if r is None or (r.meta, r.leader, r.term) != (meta, m.src, m.term):
            if m.offset != 0:
                self._reply_snapshot(m, 0, reject=True)  # send it from the start
                return
            self._discard_receive()
            r = self._recv = _Receive(meta, m.src, m.term)
        r.idle = 0
        if m.offset > r.received:
            self._reply_snapshot(m, r.received, reject=True)  # a hole: resend from here
            return
        if not m.done and end <= r.received:
            self._reply_snapshot(m, r.received)  # a duplicate
            return
        chunk = m
        if m.offset < r.received:  # overlaps what we hold: keep only the new part
            chunk = attrs.evolve(m, offset=r.received, data=m.data[r.received - m.offset :])
        r.received = end
        self._snap_chunks.append(chunk)
        if m.done:
            self._recv = None
            self._restore(meta)
            self._reply_snapshot(m, end, done=True)
        else:
            self._reply_snapshot(m, end)

    def _tick_receive(self) -> None:
        """A snapshot receive with no chunk for ``snapshot_receive_ticks`` is abandoned (its
        partial file goes): the leader that sent it stopped, and a live one restarts at 0."""
        r = self._recv
        if r is not None:
            r.idle += 1
            if r.idle >= self._cfg.snapshot_receive_ticks:
                self._discard_receive()

    def _reply_snapshot(
        self, m: InstallSnapshot, offset: int, done: bool = False, reject: bool = False
    ) -> None:
        self._send(
            InstallSnapshotResponse(
                self._term, self._id, m.src, m.meta.index, offset, done=done, reject=reject
            )
        )

    def _discard_receive(self) -> None:
        """Give up the snapshot being received: its unhanded chunks go, the runtime drops the
        rest."""
        if self._recv is not None:
            self._recv = None
            self._snap_chunks = []
            self._snap_discard = True

    def _restore(self, meta: SnapshotMeta) -> None:
        """Become the snapshot: our log does not hold its last entry, so all of it goes (a
        conflicting suffix included); commit and configuration are the snapshot's."""
        self._log.restore(meta)
        self._commit = meta.index
        self._apply_emitted = meta.index
        self._configs = ConfigHistory([(meta.index, meta.config)])

    # -- snapshots: leader side -------------------------------------------------------------
    def _send_snapshot(self, peer: int) -> None:
        """Send chunks of our current snapshot to ``peer`` as far as the window allows; a
        snapshot newer than the one in transfer restarts the transfer."""
        if self._log.pending is not None:
            return  # our own storage is being replaced by a received snapshot
        storage = self._log.storage
        meta = storage.snapshot_meta()
        pr = self._progress[peer]
        t = pr.transfer
        if pr.state is not ProgressState.SNAPSHOT or t is None or t.meta != meta:
            pr.become_snapshot(meta, storage.snapshot_size())
            t = pr.transfer
            assert t is not None
        size = self._cfg.snapshot_chunk_bytes
        while t.can_send(self._cfg.snapshot_window):
            data = storage.snapshot_chunk(t.next, size)
            end = t.next + len(data)
            done = end >= t.size
            self._send(InstallSnapshot(self._term, self._id, peer, meta, t.next, data, done))
            t.sent(end, done)

    def _handle_snapshot_response(self, pr: Progress, m: InstallSnapshotResponse) -> None:
        if m.done:
            if m.index > self._log.last_index():
                return  # cannot be a reply to us
            if pr.maybe_update(m.index):
                if pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
                    pr.become_replicate()  # it matches exactly up to the snapshot
                if m.src in self.voters:
                    self._maybe_commit()
                if self._role is not Role.LEADER:
                    return
            if not self._send_appends(m.src) and pr.can_bump_commit(self._commit):
                self._commit_bcast = True
            return
        t = pr.transfer
        if pr.state is not ProgressState.SNAPSHOT or t is None or m.index != t.meta.index:
            return  # about a transfer that is over
        if m.reject:
            t.rewind(m.offset)
        else:
            t.ack(m.offset)
        self._send_snapshot(m.src)

    def _tick_snapshots(self) -> None:
        """Resend what a stalled transfer has not had acknowledged (chunks were lost)."""
        for peer in self._peers():
            pr = self._progress[peer]
            t = pr.transfer
            if pr.state is not ProgressState.SNAPSHOT or t is None:
                continue
            t.idle_ticks += 1
            if t.idle_ticks >= self._cfg.snapshot_retry_ticks:
                t.rewind(t.acked)
                self._send_snapshot(peer)

    # -- reads -----------------------------------------------------------------------------
    def _leader_read(self, read: PendingRead) -> None:
        term = self._term
        committed_in_term = self._committed_in_term == term
        if not committed_in_term and self._log.term_or_none(self._commit) == term:
            # Kept for the term: a leader's commit index only moves on through its own
            # term's entries, so once there it stays there (no log lookup per read).
            self._committed_in_term = term
            committed_in_term = True
        if committed_in_term and read.src and self._quorum_with(read.src):
            # A voter's request at our term is its word, given after its reads began, that
            # it had seen no later term; with ours now, that is a quorum. A leader of a later
            # term elected before those reads began would have needed one of our two votes
            # (quorums intersect), so every write acknowledged before them is in our commit
            # index: the heartbeat round would prove nothing more. (3 voters or fewer.)
            read.index = self._commit
            self._release_reads([read])
            return
        self._reads.add(read, committed_in_term)

    def _quorum_with(self, peer: int) -> bool:
        """This leader and voter ``peer`` are a quorum of the configuration in force."""
        vs = self.voters
        return sum(1 for v in vs if v in (self._id, peer)) >= quorum(len(vs))

    def _flush_leader(self) -> None:
        """Send what proposals, commits and reads since the last ready() need, batched."""
        new_round = False
        if self._reads.unassigned:
            q_self = self._id in self.voters and len(self.voters) == 1
            if q_self or "read_without_quorum" in self._bugs:
                for r in self._reads.unassigned:
                    r.index = self._commit
                self._release_reads(self._reads.unassigned)
                self._reads.unassigned = []
            else:
                self._reads.start_round(self._commit)
                self._read_rounds += 1
                new_round = True
        commit_due = self._commit_due or (self._commit_bcast and (
            new_round or not self._cfg.lazy_commit))
        if self._bcast_pending or new_round or commit_due:
            askers = self._round_peers() if new_round else ()
            for peer in self._peers():
                sent = self._bcast_pending and self._send_appends(peer)
                if not sent and (peer in askers or (
                        commit_due and self._progress[peer].can_bump_commit(self._commit))):
                    self._send_heartbeat(peer)
        if commit_due:
            self._commit_bcast = False  # every follower that could use it was told
        self._bcast_pending = self._commit_due = False

    def _round_peers(self) -> list[int]:
        """The peers a read round's heartbeat goes to: the voters a quorum needs besides
        us, those that answered the latest rounds first (raftkv.raft.read_only)."""
        voters = self.voters
        peers = self._peers()
        if self._id not in voters:
            return peers
        need = quorum(len(voters)) - 1
        others = [p for p in peers if p in voters]
        if need >= len(others):
            return peers
        progress = self._progress
        others.sort(key=lambda p: progress[p].acked_seq, reverse=True)
        return others[:need]

    def _maybe_confirm_reads(self) -> None:
        if not self._reads.rounds:
            return
        acked = {peer: pr.acked_seq for peer, pr in self._progress.items()}
        acked[self._id] = self._reads.seq
        confirmed = committed_index(self.voters, acked)
        self._release_reads(self._reads.confirm(confirmed))

    def _release_reads(self, reads: list[PendingRead]) -> None:
        for r in reads:
            if r.src == 0:
                self._read_states.append(ReadState(r.ctx, r.index))
            else:
                self._send(ReadIndexResponse(self._term, self._id, r.src, r.ctx, r.index, True))
                pr = self._progress.get(r.src)
                if self._cfg.lazy_commit and pr is not None and pr.can_bump_commit(
                        self._commit):
                    # Its read waits to apply up to r.index: let it learn that index is
                    # committed now, not at the next tick (see _commit_due).
                    self._send_heartbeat(r.src)

    def _fail_leader_reads(self) -> None:
        for r in self._reads.drain():
            if r.src == 0:
                self._failed_reads.append(r.ctx)
            else:
                self._send(ReadIndexResponse(self._term, self._id, r.src, r.ctx, 0, False))

    def _fail_forwarded_reads(self) -> None:
        for r in self._forwarded:
            self._failed_reads.extend(r.ctxs)
        self._failed_reads.extend(self._unsent_reads)
        self._forwarded, self._unsent_reads = [], []

    def _flush_reads(self) -> None:
        """Follower: ask the leader once for every read since the last ready(). The leader
        answers the batch's id with one index, confirmed by one heartbeat round that
        started after the request arrived, which is after each of the reads began: the
        same guarantee each read would get alone, for one message each way.

        Batch ids start at a random 64-bit base, not at 0: a leader's answer to a request
        sent before a restart of ours must not match a new batch, whose reads began after
        the index it carries was confirmed (a stale read)."""
        if not self._unsent_reads:
            return
        if not self._leader or self._role is not Role.FOLLOWER:
            self._fail_forwarded_reads()
            return
        if not self._batch_ids:
            self._batch_ids = self._rng.getrandbits(64) | 1
        batch = b"*" + self._batch_ids.to_bytes(8, "big")
        self._batch_ids = self._batch_ids % (2**64 - 1) + 1
        reads, self._unsent_reads = self._unsent_reads, []
        self._forwarded.append(ForwardedRead(batch, self._leader, reads))
        self._send(ReadIndexRequest(self._term, self._id, self._leader, batch))

    def _handle_read_response(self, m: ReadIndexResponse) -> None:
        for n, r in enumerate(self._forwarded):
            if r.ctx == m.ctx and r.leader == m.src:
                del self._forwarded[n]
                if m.ok:
                    self._read_states.extend(ReadState(ctx, m.index) for ctx in r.ctxs)
                else:
                    self._failed_reads.extend(r.ctxs)
                return

    # -- plumbing --------------------------------------------------------------------------
    def _send(self, m: RaftMessage) -> None:
        self._msgs.append(m)

    def _hard_state(self) -> HardState:
        vote = 0 if "skip_persist_vote" in self._bugs else self._vote
        return HardState(self._term, vote, self._commit)

    def _load_configs(self, stored: ClusterConfig) -> ConfigHistory:
        """Configuration history from storage: CONFIG entries past the commit index may still
        be truncated, so keep them separately from the committed base."""
        first, last = self._log.first_index(), self._log.last_index()
        start = max(first, self._commit + 1)
        uncommitted = [(e.index, decode_config(e.data)) for e in self._scan_configs(start, last)]
        if not uncommitted:
            return ConfigHistory([(self._commit, stored)])
        base_index = first - 1
        base = self._log.storage.snapshot_meta().config
        for e in self._scan_configs(first, self._commit):
            base_index, base = e.index, decode_config(e.data)
        return ConfigHistory([(base_index, base), *uncommitted])

    def _scan_configs(self, lo: int, hi: int) -> list[Entry]:
        out: list[Entry] = []
        while lo <= hi:
            chunk = self._log.entries(lo, hi + 1, self._cfg.max_batch_bytes)
            out += [e for e in chunk if e.kind == CONFIG]
            lo = chunk[-1].index + 1
        return out
