"""One seed -> one simulation -> one verdict; many seeds, optionally on several processes.

A run is a pure function of (seed, params): ``random.Random(seed)`` picks the cluster size
and the core's configuration, then seeds separate child generators for the network, the
disks, the fault planner, the clients and every node incarnation. Nothing reads the wall
clock, iterates a set of strings, or touches the global ``random``.

Half the seeds also change their membership at random during the chaos phase (their own
generator, so the others keep their schedules; see ``Cluster.change_config``).

Phases: *chaos* (``ticks`` ticks of faults and client traffic), then *heal* (links up, no
loss, crashed nodes restarted; clients keep proposing for ``HEAL_TRAFFIC`` ticks, then
stop) until the cluster is *settled*: one leader, followed by every node, with its whole log
committed and applied. Liveness: a leader within ``LEADER_BOUND`` ticks of the heal, settled
within ``SETTLE_BOUND`` plus ``CATCH_UP_TICKS`` per entry of the backlog when clients stop
(a lagging voter may be needed for every commit, and some seeds allow one entry per
round trip), every proposal then either committed or lost, and every follower caught up
at a pace of at least one entry per ``CATCH_UP_TICKS`` ticks.
"""

from __future__ import annotations

import hashlib
import random
import traceback
from collections.abc import Iterable, Iterator

import attrs

from chaos.sim.clocks import NodeClocks
from chaos.sim.cluster import Cluster
from chaos.sim.faults import FaultPlanner
from chaos.sim.invariants import Violation
from chaos.sim.kvclients import KVWorkload
from chaos.sim.kvmode import KVLayer
from chaos.sim.network import TICK
from chaos.sim.txnclients import TxnWorkload
from chaos.sim.txnclients import make as make_txn
from chaos.sim.workload import Workload
from raftkv.raft import RaftConfig, RaftCore, SafetyViolation

DEFAULT_TICKS = 500
LONG_FACTOR = 10
HEAL_TRAFFIC = 30
LEADER_BOUND = 300  # ticks: 10 maximal election timeouts at the default 15-tick base
SETTLE_BOUND = 600
CATCH_UP_TICKS = 4  # per entry a follower is behind
TRACE_LEN = 50
# Messages a node may send in one tick before the run counts as a storm. Busy seeds peak
# near 300 (catch-up with one-entry batches and 64 in flight); a feedback loop (responses
# that trigger more requests than they answer) grows past this within a few round trips.
STORM_PER_NODE = 1000
# The KV layer (chaos/sim/kvmode.py): by default on in these shares of the seeds, each
# drawn from its own generator (the other seeds keep their schedules and digests). A KV
# seed costs ~1.8x the CPU of a plain one (TTLs or sessions; 2-3x both): 15 % each keeps
# the 2,000-seed quota within ~1.25x of its old runtime; --ttl/--sessions run them all.
TTL_SHARE = 0.15
SESSIONS_SHARE = 0.15
# Slow writes: on by default in this share of the seeds (their own generator).
SLOW_WRITES_SHARE = 0.5
# The runtime's refused-port hint after a crash (RaftCore.leader_unreachable): on by default
# in this share of the seeds (their own generator).
GONE_HINTS_SHARE = 0.5
# Transactions, scripts and session expiry (--txn, chaos/sim/txnclients.py): by default
# in this share of the seeds that run TTLs or sessions (~14 % of all), drawn from their own
# generator, so every other seed (KV ones included) keeps its schedule and digest. Only
# among KV seeds: a seed that gains the KV layer costs ~1.8x, so 10 % of all seeds cost
# +17 % CPU on seeds 5000-5199; txn on a KV seed costs ~1.1x of it.
TXN_SHARE = 0.5
SKEWS_MS = (0, 5, 50, 200)  # the largest node clock skew (either way), by seed
JUMPS_MS = (300, 2_000, 3_600_000)  # clock steps of a live node, either way
KV_MIN_CHUNK = 1024  # snapshot chunk bytes at least, with the KV layer (see run_seed)
CHANGES = ("add", "promote", "remove", "replace_leader")
CHANGE_WEIGHTS = (3, 3, 2, 1)


@attrs.frozen
class SimParams:
    nodes: int | None = None  # None: drawn from the seed (3 or 5, sometimes 7)
    ticks: int | None = None  # chaos-phase ticks; None: DEFAULT_TICKS (x LONG_FACTOR if long)
    long: bool = False
    bugs: frozenset[str] = frozenset()
    digest: bool = False
    rules: bool = True  # False: check outcomes only (see SafetyChecker)
    snapshots: bool = True  # most seeds compact logs and send InstallSnapshot (see below)
    membership: bool = True  # half the seeds change their membership (see below)
    # The KV layer: None draws it per seed (TTL_SHARE, SESSIONS_SHARE), as the CLI does by
    # default; True/False forces. Off here, so that the seeds tests pin (found without it)
    # keep their schedules.
    ttl: bool | None = False
    sessions: bool | None = False
    # Slow writes (Cluster: Readies whose fsync stays in flight while the core is stepped
    # and sends RaftCore.take_early's messages): None draws it per seed (SLOW_WRITES_SHARE,
    # its own generator), as the CLI does by default; off here for the pinned seeds.
    slow_writes: bool | None = False
    txn: bool | None = False
    gone_hints: bool | None = False
    # Test only: session clients retry without the ``once`` wrapper (the checker must see
    # a double apply).
    unsafe_retries: bool = False

    def chaos_ticks(self) -> int:
        if self.ticks is not None:
            return self.ticks
        return DEFAULT_TICKS * (LONG_FACTOR if self.long else 1)

    def command(self, seed: int, nodes: int) -> str:
        cmd = f"raftkv-chaos sim --seeds 1 --seed-start {seed} --nodes {nodes}"
        if self.ticks is not None:
            cmd += f" --steps {self.ticks}"
        if self.long:
            cmd += " --long"
        for bug in sorted(self.bugs):
            cmd += f" --bug {bug}"
        drawn = draw_kv(seed)
        ttl = drawn[0] if self.ttl is None else self.ttl
        sessions = drawn[1] if self.sessions is None else self.sessions
        for flag, value, default in (("ttl", self.ttl, drawn[0]),
                                     ("sessions", self.sessions, drawn[1]),
                                     ("slow-writes", self.slow_writes, draw_slow_writes(seed)[0]),
                                     ("txn", self.txn, draw_txn(seed, ttl or sessions)[0]),
                                     ("gone-hints", self.gone_hints, draw_gone_hints(seed)[0])):
            if value is not None and value != default:  # else the CLI's draw gives it
                cmd += f" --{flag}" if value else f" --no-{flag}"
        return cmd


def draw_kv(seed: int) -> tuple[bool, bool, random.Random]:
    """Whether ``seed`` runs TTLs and sessions by default, and the KV layer's generator."""
    kvr = random.Random(f"kv-{seed}")
    ttl = kvr.random() < TTL_SHARE
    return ttl, kvr.random() < SESSIONS_SHARE, kvr


def draw_slow_writes(seed: int) -> tuple[bool, random.Random]:
    """Whether ``seed`` runs slow writes by default, and their generator."""
    wr = random.Random(f"slow-writes-{seed}")
    return wr.random() < SLOW_WRITES_SHARE, wr


def draw_gone_hints(seed: int) -> tuple[bool, random.Random]:
    """Whether ``seed`` tells survivors of a crash that the node is gone, and their generator."""
    gr = random.Random(f"gone-hints-{seed}")
    return gr.random() < GONE_HINTS_SHARE, gr


def draw_txn(seed: int, kv: bool) -> tuple[bool, random.Random]:
    """Whether ``seed`` runs transactions, scripts and session expiry by default (``kv``:
    it runs TTLs or sessions), and the generator of that workload (its own, so the other
    KV parts' draws stay as they were)."""
    txr = random.Random(f"txn-{seed}")
    return kv and txr.random() < TXN_SHARE, txr


@attrs.frozen
class SeedResult:
    seed: int
    nodes: int
    ok: bool
    prop: str = ""
    message: str = ""
    trace: tuple[str, ...] = ()
    command: str = ""
    ticks: int = 0
    steps: int = 0
    elections: int = 0
    commits: int = 0
    lost: int = 0
    reads: int = 0
    faults: tuple[tuple[str, int], ...] = ()
    digest: str = ""
    snapshots: tuple[int, int, int] = (0, 0, 0)  # compactions, installs, install crashes
    # Membership changes proposed: add, promote, remove, replace_leader, refused (by the
    # core), and CONFIG entries committed.
    membership: tuple[tuple[str, int], ...] = ()
    kv: tuple[tuple[str, int], ...] = ()  # the KV layer's counters (KVStats), if on


def draw_nodes(rng: random.Random) -> int:
    return rng.choices((3, 5, 7), weights=(45, 45, 10))[0]


def make_config(rng: random.Random, bugs: frozenset[str]) -> RaftConfig:
    return RaftConfig(
        pre_vote=rng.random() < 0.8,
        check_quorum=rng.random() < 0.8,
        max_inflight=rng.choice((1, 4, 64)),
        max_batch_bytes=rng.choice((1, 100, 1 << 20)),  # 1: one entry per AppendEntries
        bugs=bugs,
    )


def run_seed(seed: int, params: SimParams = SimParams()) -> SeedResult:

    rng = random.Random(seed)
    k = draw_nodes(rng)
    if params.nodes is not None:
        k = params.nodes
    ids = list(range(1, k + 1))
    # Both ways of telling followers the commit index (RaftConfig.lazy_commit; the runtime
    # uses lazy), drawn from the seed apart from ``rng`` so that every other draw of a
    # seed, and so every recorded regression seed's scenario, stays what it was.
    config = attrs.evolve(make_config(rng, params.bugs),
                          lazy_commit=random.Random(f"lazy-commit {seed}").random() < 0.75)
    digest = hashlib.sha256() if params.digest else None

    # Snapshots draw from their own generator, so the other draws (and so the schedules of
    # runs without them) stay as they were.
    snap: random.Random | None = random.Random(f"snapshots-{seed}")
    snapshot_max = 0
    if not params.snapshots or snap.random() < 0.25:
        snap = None
    else:
        config = attrs.evolve(
            config,
            snapshot_chunk_bytes=snap.choice((8, 32, 1 << 20)),
            snapshot_window=snap.choice((1, 2, 4)),
            snapshot_retry_ticks=snap.choice((3, 10, 20)),
        )
        snapshot_max = snap.choice((5, 20, 80))

    # Membership changes too: their own generator, on for half the seeds.
    member: random.Random | None = random.Random(f"membership-{seed}")
    member_rate = 0.0
    if not params.membership or member.random() < 0.5:
        member = None
    else:
        member_rate = member.uniform(0.005, 0.04)

    def make_node(node_id: int, storage: object, node_rng: random.Random) -> object:
        return RaftCore(node_id, storage, config, node_rng)

    # The KV layer: real state machines, skewed and jumping clocks, TTLs and sessions.
    drawn_ttl, drawn_sessions, kvr = draw_kv(seed)
    ttl = params.ttl if params.ttl is not None else drawn_ttl
    sessions = params.sessions if params.sessions is not None else drawn_sessions
    drawn_txn, txr = draw_txn(seed, ttl or sessions)
    txn = params.txn if params.txn is not None else drawn_txn
    kv: KVLayer | None = None
    kv_clients: KVWorkload | None = None
    txn_clients: TxnWorkload | None = None
    jump_rate = 0.0
    if ttl or sessions or txn or params.unsafe_retries:
        clocks = NodeClocks(random.Random(kvr.getrandbits(64)), kvr.choice(SKEWS_MS))
        kv = KVLayer(clocks, random.Random(kvr.getrandbits(64)), ttl)
        # --txn brings session clients whose sessions expire (short timeouts, stalls).
        kv_clients = KVWorkload(random.Random(kvr.getrandbits(64)), ttl,
                                sessions or txn or params.unsafe_retries,
                                params.unsafe_retries, expiry=txn)
        kv_clients.stats = kv.stats
        if txn:
            txn_clients, kv.txn = make_txn(random.Random(txr.getrandbits(64)), kv.stats)
        if ttl and kvr.random() < 0.5:
            jump_rate = kvr.uniform(0.002, 0.01)
        if snap is not None and config.snapshot_chunk_bytes < KV_MIN_CHUNK:
            # A KV snapshot (sessions, replies, the append log) is 100-1000x the register's;
            # in 8-byte chunks, one chunk per round trip, a follower could not catch up
            # within the liveness bound (seed 200404: 32-byte chunks). 1 KiB keeps the
            # chunks per snapshot in the range the register seeds exercise.
            config = attrs.evolve(config, snapshot_chunk_bytes=KV_MIN_CHUNK)

    drawn_slow, slow_rng = draw_slow_writes(seed)
    slow = params.slow_writes if params.slow_writes is not None else drawn_slow
    drawn_hints, hints_rng = draw_gone_hints(seed)
    hints = params.gone_hints if params.gone_hints is not None else drawn_hints
    cluster = Cluster(
        random.Random(rng.getrandbits(64)),
        ids,
        make_node,
        trace_len=TRACE_LEN,
        digest=digest,
        rules=params.rules,
        snapshots=snap,
        snapshot_max=snapshot_max,
        kv=kv,
        slow_writes=slow_rng if slow else None,
        gone_hints=hints_rng if hints else None,
    )
    planner = FaultPlanner(random.Random(rng.getrandbits(64)), ids)
    clients = Workload(random.Random(rng.getrandbits(64)), ids)
    chaos = params.chaos_ticks()
    tick = 0
    prop = message = ""
    try:
        for tick in range(chaos):
            for fault in planner.plan(tick, cluster.view()):
                cluster.apply_fault(fault)
            clients.act(cluster)
            if kv_clients is not None:
                kv_clients.act(cluster, tick)
                if txn_clients is not None:
                    txn_clients.act(cluster, tick)
                if jump_rate and kvr.random() < jump_rate:
                    _jump(cluster, kvr)
            if member is not None and member.random() < member_rate:
                change = member.choices(CHANGES, CHANGE_WEIGHTS)[0]
                cluster.change_config(change, member)
            run_tick(cluster, tick)
            if tick % 64 == 0:
                cluster.history.expire_reads(cluster.now - 200 * TICK)
        tick = chaos
        cluster.heal_all()
        leader_at = None
        settle_by = chaos + HEAL_TRAFFIC + SETTLE_BOUND  # raised by the backlog below
        while True:
            clients.act(cluster, propose=tick < chaos + HEAL_TRAFFIC)
            if kv_clients is not None:
                kv_clients.act(cluster, tick, propose=tick < chaos + HEAL_TRAFFIC)
            if txn_clients is not None:
                txn_clients.act(cluster, tick, propose=tick < chaos + HEAL_TRAFFIC)
            run_tick(cluster, tick)
            tick += 1
            since = tick - chaos
            if leader_at is None and cluster.leader():
                leader_at = tick
            if leader_at is None and since > LEADER_BOUND:
                raise Violation("liveness", f"no leader {LEADER_BOUND} ticks after the heal")
            if since == HEAL_TRAFFIC:
                settle_by += CATCH_UP_TICKS * cluster.backlog()
            lid = cluster.settled() if since > HEAL_TRAFFIC else 0
            if lid:
                break
            if tick > settle_by:
                raise Violation(
                    "liveness",
                    f"no settled leader {tick - chaos} ticks after the heal ({_state(cluster)})",
                )
        unresolved = cluster.history.unresolved()
        if unresolved:
            p = unresolved[0]
            raise Violation(
                "liveness",
                f"{len(unresolved)} proposals neither committed nor lost after the heal, "
                f"e.g. {p.value!r} at ({p.index}, {p.term}) via node {p.node} ({_state(cluster)})",
            )
        # Followers catch up at a bounded pace (one entry per RTT with the smallest batches).
        deadline = tick + SETTLE_BOUND + CATCH_UP_TICKS * cluster.lag(lid)
        while not lid or cluster.lag(lid):
            clients.act(cluster, propose=False)
            run_tick(cluster, tick)
            tick += 1
            lid = cluster.settled()
            if tick > deadline:
                raise Violation(
                    "liveness", f"followers did not catch up by tick {deadline} ({_state(cluster)})"
                )
        if kv is not None and kv_clients is not None:
            members = cluster.members(cluster.nodes[lid])
            kv.final_agreement(members)
            kv.final_exactly_once(members, kv_clients.ops)
    except Violation as v:
        prop, message = v.prop, v.detail
    except SafetyViolation as e:  # the core's own assertion fired
        prop, message = "core safety check", f"{e} ({_where(e)})"
    except Exception as e:  # a crash of the core (or of the simulator) fails the seed too
        prop = "exception"
        message = "".join(traceback.format_exception(e)).rstrip()
    ok = not prop
    if digest is not None:
        digest.update(f"{ok}|{prop}|{message}|{_state(cluster)}".encode())
    history = cluster.history
    return SeedResult(
        seed=seed,
        nodes=k,
        ok=ok,
        prop=prop,
        message=message,
        trace=() if ok else tuple(cluster.format_trace()),
        command=params.command(seed, k),
        ticks=tick,
        steps=cluster.stats.steps,
        elections=cluster.checker.elections,
        commits=history.stats.committed,
        lost=history.stats.lost,
        reads=history.stats.reads_served,
        faults=tuple(sorted(cluster.stats.faults.items())),
        digest=digest.hexdigest() if digest is not None else "",
        snapshots=(cluster.stats.snapshots, cluster.stats.installs, cluster.stats.install_crashes),
        membership=tuple(sorted({**cluster.stats.changes,
                                 "committed": cluster.stats.configs_committed}.items()))
        if cluster.stats.changes else (),
        kv=tuple(sorted(attrs.asdict(kv.stats).items())) if kv is not None else (),
    )


def _jump(cluster: Cluster, rng: random.Random) -> None:
    """Step a live node's wall clock (the leader's, most of the time) by one of JUMPS_MS."""
    assert cluster.kv is not None
    lid = cluster.leader()
    alive = [n.id for n in cluster.nodes.values() if n.alive]
    if not alive:
        return
    node = lid if lid and rng.random() < 0.7 else rng.choice(alive)
    ms = rng.choice(JUMPS_MS) * rng.choice((-1, 1))
    cluster.kv.clocks.jump(node, ms)
    cluster.event(node, "clock jump", f"{ms:+d} ms")


def run_tick(cluster: Cluster, tick: int) -> None:
    """One tick of the cluster, and no message storm in it."""
    sent = cluster.net.stats.sent
    cluster.run_tick(tick)
    sent = cluster.net.stats.sent - sent
    limit = STORM_PER_NODE * len(cluster.nodes)
    if sent > limit:
        raise Violation(
            "message storm",
            f"{sent} messages sent in tick {tick} (limit {limit}: {STORM_PER_NODE} a node); "
            f"something answers messages with more messages ({_state(cluster)})",
        )


def _state(cluster: Cluster) -> str:
    parts = []
    for node in cluster.nodes.values():
        if not node.alive:
            parts.append(f"n{node.id}:down")
            continue
        r = node.raft
        parts.append(
            f"n{node.id}:{r.role.name.lower()} t{r.term} c{r.commit_index} "
            f"l{r.last_index} a{node.applied}"
        )
    return ", ".join(parts)


def _where(e: BaseException) -> str:
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}"


def _job(args: tuple[int, SimParams]) -> SeedResult:
    return run_seed(*args)


def run_seeds(seeds: Iterable[int], params: SimParams, jobs: int = 1) -> Iterator[SeedResult]:
    """Results in seed order, whatever ``jobs`` is (each seed is independent)."""
    work = [(s, params) for s in seeds]
    if jobs <= 1 or len(work) <= 1:
        for item in work:
            yield _job(item)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs) as pool:
        yield from pool.imap(_job, work, chunksize=4)


@attrs.define
class Totals:
    seeds: int = 0
    failed: int = 0
    ticks: int = 0
    steps: int = 0
    elections: int = 0
    commits: int = 0
    lost: int = 0
    reads: int = 0
    faults: dict[str, int] = attrs.Factory(dict)
    kv_seeds: int = 0  # seeds with the KV layer on, and its counters summed
    kv: dict[str, int] = attrs.Factory(dict)

    def add(self, r: SeedResult) -> None:
        self.seeds += 1
        self.failed += not r.ok
        self.ticks += r.ticks
        self.steps += r.steps
        self.elections += r.elections
        self.commits += r.commits
        self.lost += r.lost
        self.reads += r.reads
        for kind, n in r.faults:
            self.faults[kind] = self.faults.get(kind, 0) + n
        if r.kv:
            self.kv_seeds += 1
            for name, n in r.kv:
                self.kv[name] = self.kv.get(name, 0) + n

    def kv_summary(self) -> str:
        counters = " ".join(f"{k}={v}" for k, v in sorted(self.kv.items()))
        return f"sim: KV layer on {self.kv_seeds} seeds: {counters}"

    def summary(self, wall: float) -> str:
        faults = ",".join(f"{k}:{v}" for k, v in sorted(self.faults.items())) or "none"
        verdict = "OK" if not self.failed else "FAILED"
        return (
            f"sim {verdict}: seeds={self.seeds} held={self.seeds - self.failed} "
            f"failed={self.failed} ticks={self.ticks} steps={self.steps} "
            f"elections={self.elections} commits={self.commits} lost={self.lost} "
            f"reads={self.reads} faults={faults} wall={wall:.1f}s"
        )
