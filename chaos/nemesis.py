"""Faults for the real-process chaos suite: what to break, when, and how to heal it.

A run's schedule is drawn up front from the seed (``plan``): faults one at a time, each
healed before the next, separated by quiet gaps, the last one healed well before the end so
the cluster can be observed recovering. The nemesis names cycle in a seeded order so a
short run still meets every requested kind. Targets that depend on the live cluster ("the
leader") are resolved when the fault starts; every other choice comes from the fault's own
seed, so a seed names the same sequence of faults on every run.

Names (``--nemesis``): kill (kill -9 a random node, restart it), kill-leader, pause
(SIGSTOP/SIGCONT a node, the leader half the time), partition (one of isolate-leader,
isolate-follower, split, bridge; each can also be named alone), one-way (one direction of
one link lost), latency (delay and jitter on a node's links or on all links), member
(membership changes: ``replace`` removes a random node, the leader half the time, wipes it
and adds it back empty under a new id; ``grow`` adds two empty nodes and, when healed,
removes two random members, the leader possibly among them); ``all``. Resource faults,
named only explicitly (not in ``all``: they need root): disk-full (a node's data directory,
on its own small tmpfs, is filled to the last few KiB; the node must stop with one clear
line, and is restarted once the space is freed). Traffic faults, named only explicitly
(they need a backend that knows the nodes' ports and processes, ``TrafficControl``):
hostile (malformed and hostile traffic at every node's client and peer ports while the
workload runs: chaos.fuzz.hostile_traffic), slow-reader (a client pipelines 256 GETs of a
1 MiB value and never reads; the node must cut it at its output-buffer limit), huge-value
(a client SETs values just under --max-request-bytes, and now and then one over it, in a
loop; skipped when disk-full's 32 MiB disks are in use: it would fill them all),
fd-exhaust (the node's open-file limit is lowered to what it uses plus 8 and 300
connections are opened to its client port; the limit is restored when healed). The
``resources`` name is disk-full, fd-exhaust, slow-reader and huge-value.

Membership changes need a backend whose peer addresses are the same for every node (a
CONFIG entry carries one address per member for everyone), so only ``--net none`` has
them; ``all`` skips them elsewhere.

The fault kinds recorded in the history's fault windows are the specific ones (kill,
kill-leader, pause, isolate-leader, isolate-follower, split, bridge, one-way, latency,
replace, grow, disk-full, hostile, slow-reader, huge-value, fd-exhaust), so availability
is reported per kind.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

import attrs
import trio

from chaos.fuzz import LiveStats, LiveTarget, hostile_traffic
from chaos.workload import client_security, info_raft
from wire.resp import encode_command

Link = tuple[int, int]

NEMESES = ("kill", "kill-leader", "pause", "partition", "one-way", "latency", "member")
PARTITIONS = ("isolate-leader", "isolate-follower", "split", "bridge")
MEMBER_KINDS = ("replace", "grow")
RESOURCE_NEMESES = ("disk-full",)  # need a Control with disks (DiskControl); not in "all"
# Need a TrafficControl (the nodes' ports and pids); not in "all".
TRAFFIC_NEMESES = ("hostile", "slow-reader", "huge-value", "fd-exhaust")
RESOURCES = ("disk-full", "fd-exhaust", "slow-reader", "huge-value")  # --nemesis resources
# What a backend supports unless it says otherwise (``kinds``): membership changes only
# where it says so.
KINDS = ("kill", "kill-leader", "pause", *PARTITIONS, "one-way", "latency")
DEFAULT_NEMESES = ("kill", "pause", "partition")


class Unsupported(Exception):
    """The network backend cannot produce this fault."""


def parse_nemeses(text: str) -> tuple[str, ...]:
    """``kill,partition`` -> names; ``all`` -> every name; ``none`` -> no faults.

    Raises ValueError on an unknown name.
    """
    names: list[str] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        if item == "all":
            names += NEMESES
        elif item == "none":
            continue
        elif item == "resources":
            names += RESOURCES
        elif (item in NEMESES or item in PARTITIONS or item in RESOURCE_NEMESES
              or item in TRAFFIC_NEMESES):
            names.append(item)
        else:
            raise ValueError(f"unknown nemesis {item!r}; choose from "
                             f"{', '.join((*NEMESES, *PARTITIONS, *RESOURCE_NEMESES))}, "
                             f"{', '.join(TRAFFIC_NEMESES)}, resources, all, none")
    return tuple(dict.fromkeys(names))


def kinds_of(name: str) -> tuple[str, ...]:
    """The fault kinds a nemesis name can produce."""
    if name == "member":
        return MEMBER_KINDS
    return PARTITIONS if name == "partition" else (name,)


# -- the schedule -----------------------------------------------------------------------


@attrs.frozen
class Fault:
    """One scheduled fault: ``kind`` from ``start`` for ``duration`` seconds (run time)."""

    kind: str
    start: float
    duration: float
    seed: int  # drives every choice of this fault that the live cluster does not decide


DURATIONS = {"kill": (2.0, 5.0), "kill-leader": (2.0, 5.0), "pause": (2.0, 5.0),
             "latency": (3.0, 6.0), "replace": (3.0, 6.0), "grow": (4.0, 8.0),
             "disk-full": (3.0, 6.0), "hostile": (5.0, 10.0), "slow-reader": (4.0, 8.0),
             "huge-value": (3.0, 6.0), "fd-exhaust": (3.0, 6.0)}
PARTITION_DURATION = (3.0, 7.0)


def plan(seed: int, names: Sequence[str], duration: float, nodes: int,
         supported: Iterable[str] = KINDS, warmup: float = 2.0, tail: float | None = None,
         gap: tuple[float, float] = (1.0, 2.5)) -> list[Fault]:
    """The faults of a run of ``duration`` seconds, drawn from ``seed``.

    Faults start after ``warmup`` and all end ``tail`` seconds (default: 15% of the run,
    between 3 and 10 s) before the end. Kinds the backend does not support, and bridges in clusters
    too small for one, are left out.
    """
    rng = random.Random(f"chaos-plan-{seed}")
    ok_kinds = set(supported) - ({"bridge"} if nodes < 3 else set())
    if nodes < 2:
        ok_kinds -= {*PARTITIONS, "one-way", "latency"}
    pool = [n for n in names if any(k in ok_kinds for k in kinds_of(n))]
    if tail is None:
        tail = min(10.0, max(3.0, 0.15 * duration))
    faults: list[Fault] = []
    if not pool:
        return faults
    t = warmup
    order: list[str] = []
    while True:
        if not order:
            order = pool[:]
            rng.shuffle(order)
        name = order.pop()
        kind = rng.choice([k for k in kinds_of(name) if k in ok_kinds])
        lo, hi = DURATIONS.get(kind, PARTITION_DURATION)
        length = rng.uniform(lo, hi)
        if t + length > duration - tail:
            length = lo  # too long for the time left: the shortest one, or stop
            if t + length > duration - tail:
                break
        faults.append(Fault(kind, round(t, 3), round(length, 3), rng.randrange(2**32)))
        t += length + rng.uniform(*gap)
    return faults


# -- link sets ----------------------------------------------------------------------------


def partition_links(groups: Sequence[Iterable[int]]) -> frozenset[Link]:
    """Every directed link between nodes of different groups."""
    sets = [set(g) for g in groups]
    return frozenset((a, b) for x, ga in enumerate(sets) for y, gb in enumerate(sets)
                     if x != y for a in ga for b in gb)


def isolate_links(node: int, nodes: Iterable[int]) -> frozenset[Link]:
    others = [n for n in nodes if n != node]
    return partition_links([[node], others])


def bridge_links(left: Iterable[int], right: Iterable[int]) -> frozenset[Link]:
    """Cut ``left`` from ``right``; the bridge node is in neither and sees both."""
    return partition_links([left, right])


def node_links(node: int, nodes: Iterable[int]) -> frozenset[Link]:
    """Every directed link to or from ``node``."""
    return frozenset(lk for o in nodes if o != node for lk in ((node, o), (o, node)))


def all_links(nodes: Iterable[int]) -> frozenset[Link]:
    ns = list(nodes)
    return frozenset((a, b) for a in ns for b in ns if a != b)


# -- what the nemesis acts on -----------------------------------------------------------


class Control(Protocol):
    """Node processes (a local cluster, or containers)."""

    node_ids: list[int]

    async def kill(self, node: int) -> None: ...
    async def start(self, node: int) -> None: ...
    async def pause(self, node: int) -> None: ...
    async def resume(self, node: int) -> None: ...
    async def leader(self) -> int | None: ...


class MemberControl(Control, Protocol):
    """A ``Control`` that can also change the membership (``node_ids`` follows it)."""

    async def remove_member(self, node: int) -> None: ...  # RAFT REMOVENODE, then kill it
    async def add_member(self, replacing: int | None = None) -> int: ...  # a new, empty id
    async def wait_all_voters(self) -> None: ...  # every node in node_ids is a voter


class DiskControl(Control, Protocol):
    """A ``Control`` whose nodes keep their data on disks it can fill."""

    disks: dict[int, object]  # node -> its disk (nodes without one cannot be filled)

    async def fill_disk(self, node: int) -> str: ...  # leaves a few KiB; says how much
    async def free_disk(self, node: int) -> None: ...


class TrafficControl(Control, Protocol):
    """A ``Control`` that knows its nodes' ports and processes (for traffic faults)."""

    addrs: dict[int, tuple[str, int]]  # node -> client address
    peers_authenticated: bool  # a peer secret or peer TLS: a member's Hello needs a proof

    def peer_address(self, node: int) -> tuple[str, int]: ...
    def pid(self, node: int) -> int | None: ...  # None: not running


class Net(Protocol):
    """The network between nodes (proxies, nftables, docker networks)."""

    name: str

    async def cut(self, links: Iterable[Link]) -> None: ...  # exactly these links blocked
    async def slow(self, links: Iterable[Link], delay: float, jitter: float) -> None: ...
    async def heal(self) -> None: ...
    async def close(self) -> None: ...


def supported_kinds(net: object) -> frozenset[str]:
    """Fault kinds a backend can produce (its ``kinds`` attribute, or every kind)."""
    return frozenset(getattr(net, "kinds", KINDS))


@attrs.frozen
class Injected:
    """A fault as it happened: run-time window and what exactly was done."""

    kind: str
    start: float
    end: float
    description: str
    targets: tuple[int, ...] = ()  # the nodes acted on (killed, paused, cut off, ...)


class Nemesis:
    """Injects one fault at a time and heals it; remembers everything it must undo."""

    def __init__(self, control: Control, net: Net, leader_wait: float = 5.0,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.control = control
        self.net = net
        self.leader_wait = leader_wait
        self.clock = clock
        # When the last fault took effect: just before a signal is sent, just after the
        # network backend returns (finding the leader or running nft can take a while, and
        # the old leader keeps committing until then).
        self.applied_at = 0.0
        self._killed: set[int] = set()
        self._grown: int = 0  # nodes added by a grow fault: as many to remove when healed
        self._shrink_rng = random.Random(0)
        self._member_dirty = False
        self.heal_note = ""  # what the last heal did beyond undoing (a grow's shrink)
        self._paused: set[int] = set()
        self._filled: set[int] = set()
        self._net_dirty = False
        # Traffic faults run as tasks in this nursery (the session sets it) until healed.
        self.background: trio.Nursery | None = None
        self._traffic: list[trio.CancelScope] = []
        self._traffic_stats: LiveStats | None = None
        self._fd_limits: dict[int, tuple[int, int, int]] = {}  # node -> pid, soft, hard

    @property
    def nodes(self) -> list[int]:
        """The current members (membership faults change them)."""
        return list(self.control.node_ids)

    async def _leader(self) -> int | None:
        """The current leader, waiting up to ``leader_wait`` for one to be elected."""
        with trio.move_on_after(self.leader_wait):
            while True:
                leader = await self.control.leader()
                if leader is not None:
                    return leader
                await trio.sleep(0.1)  # polling other processes: no event to wait on
        return None

    async def inject(self, fault: Fault) -> tuple[str, tuple[int, ...]]:
        """Start ``fault``: what was done and to which nodes (Unsupported if the net cannot)."""
        rng = random.Random(fault.seed)
        nodes = self.nodes
        kind = fault.kind
        if kind in ("kill", "kill-leader"):
            node = await self._leader() if kind == "kill-leader" else rng.choice(nodes)
            if node is None:
                return "skipped: no leader", ()
            self.applied_at = self.clock()
            await self.control.kill(node)
            self._killed.add(node)
            return f"kill -9 n{node}", (node,)
        if kind == "pause":
            on_leader, anyone = rng.random() < 0.5, rng.choice(nodes)
            leader = await self._leader() if on_leader else None
            node = leader or anyone
            self.applied_at = self.clock()
            await self.control.pause(node)
            self._paused.add(node)
            return f"SIGSTOP n{node}" + (" (leader)" if leader else ""), (node,)
        if kind in MEMBER_KINDS:
            return await self._member(kind, rng)
        if kind == "disk-full":
            return await self._fill(rng)
        if kind in TRAFFIC_NEMESES:
            return await self._start_traffic(kind, rng)
        if kind == "latency":
            delay = rng.uniform(0.02, 0.15)
            jitter = delay / 2
            if rng.random() < 0.5:
                links, where, targets = all_links(nodes), "all links", tuple(nodes)
            else:
                node = rng.choice(nodes)
                links, where, targets = node_links(node, nodes), f"n{node}'s links", (node,)
            self._net_dirty = True
            await self.net.slow(links, delay, jitter)
            self.applied_at = self.clock()
            return f"+{delay * 1000:.0f} ms (jitter {jitter * 1000:.0f} ms) on {where}", targets
        links, what, targets = await self._partition(kind, rng)
        if links is None:
            return what, ()
        self._net_dirty = True
        await self.net.cut(links)
        self.applied_at = self.clock()
        return what, targets

    def _members(self) -> MemberControl:
        control = self.control
        if not hasattr(control, "add_member"):
            raise Unsupported("this backend cannot change the membership")
        return control  # type: ignore[return-value]

    async def _member(self, kind: str, rng: random.Random) -> tuple[str, tuple[int, ...]]:
        control = self._members()
        on_leader, anyone = rng.random() < 0.5, rng.choice(self.nodes)
        if kind == "replace":
            leader = await self._leader() if on_leader else None
            node = leader or anyone
            self.applied_at = self.clock()
            self._member_dirty = True
            await control.remove_member(node)
            new = await control.add_member(replacing=node)
            return (f"n{node} removed, wiped, back empty as n{new}"
                    + (" (was leader)" if leader else ""), (node, new))
        self.applied_at = self.clock()
        self._member_dirty = True
        self._shrink_rng = rng  # the heal picks whom to remove from this fault's seed too
        added = []
        for _ in range(2):
            added.append(await control.add_member())
            self._grown += 1
        return f"grew by {_group(added)} to {len(self.nodes)} nodes", tuple(added)

    async def _fill(self, rng: random.Random) -> tuple[str, tuple[int, ...]]:
        """Fill one node's disk, the leader's half the time."""
        control = self.control
        disks = getattr(control, "disks", None)
        if not disks:
            raise Unsupported("no node has a disk the nemesis can fill (needs root)")
        on_leader, anyone = rng.random() < 0.5, rng.choice(sorted(disks))
        leader = await self._leader() if on_leader else None
        node = leader if leader in disks else anyone
        self.applied_at = self.clock()
        what = await control.fill_disk(node)  # type: ignore[attr-defined]
        self._filled.add(node)
        return f"n{node}'s disk full ({what})" + (" (leader)" if leader == node else ""), (node,)

    def _traffic_control(self) -> TrafficControl:
        if not hasattr(self.control, "peer_address") or self.background is None:
            raise Unsupported("this backend does not know its nodes' ports and processes")
        return self.control  # type: ignore[return-value]

    def _spawn(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` in the background until the fault is healed."""
        scope = trio.CancelScope()
        self._traffic.append(scope)

        async def run() -> None:
            with scope, contextlib.suppress(OSError, trio.BrokenResourceError,
                                            trio.ClosedResourceError, trio.TooSlowError):
                await job()
        assert self.background is not None
        self.background.start_soon(run)

    async def _start_traffic(self, kind: str, rng: random.Random
                             ) -> tuple[str, tuple[int, ...]]:
        control = self._traffic_control()
        nodes = self.nodes
        if kind == "hostile":
            targets = [LiveTarget(n, control.addrs[n], control.peer_address(n)) for n in nodes]
            cluster_id = await _cluster_id(targets)
            stats = self._traffic_stats = LiveStats()
            self.applied_at = self.clock()
            self._spawn(lambda: hostile_traffic(targets, cluster_id,
                                                control.peers_authenticated, rng, stats))
            who = "members' ids with a bad proof" if control.peers_authenticated else \
                "no member's id (peers unauthenticated)"
            return f"hostile traffic at both ports of every node ({who})", tuple(nodes)
        on_leader, anyone = rng.random() < 0.5, rng.choice(nodes)
        leader = await self._leader() if on_leader else None
        node = leader or anyone
        addr = control.addrs[node]
        tag = " (leader)" if leader else ""
        self.applied_at = self.clock()
        if kind == "slow-reader":
            self._spawn(lambda: _slow_reader(addr))
            return f"a client of n{node}{tag} asks for 256 MiB and reads nothing", (node,)
        if kind == "huge-value":
            if getattr(control, "disks", None):
                # 8 MiB entries fill disk-full's 32 MiB disks on every node in a few
                # seconds: all of them would stop (correctly), which is not this fault.
                return "skipped: the data directories are on disk-full's small disks", ()
            stats = self._traffic_stats = LiveStats()
            self._spawn(lambda: _huge_values(addr, stats))
            return f"a client of n{node}{tag} SETs values at the request limit", (node,)
        pid = control.pid(node)
        if pid is None:
            return f"skipped: n{node} is not running", ()
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        used = len(os.listdir(f"/proc/{pid}/fd"))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 8, hard))
        self._fd_limits[node] = (pid, soft, hard)
        self._spawn(lambda: _hold_connections(addr, 300))
        return (f"n{node}{tag}: open files limited to {used + 8} ({used} in use), "
                f"300 connections to its client port"), (node,)

    def _stop_traffic(self) -> None:
        for scope in self._traffic:
            scope.cancel()
        self._traffic.clear()
        for _node, (pid, soft, hard) in sorted(self._fd_limits.items()):
            with contextlib.suppress(OSError):  # (the node was restarted meanwhile)
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        self._fd_limits.clear()
        if self._traffic_stats is not None:
            self.heal_note = f"; {self._traffic_stats.summary()}"
            self._traffic_stats = None

    async def _heal_members(self) -> None:
        """Back to the original size, every member a voter: the grown nodes' count is
        removed again (random members, the leader possibly among them)."""
        control = self._members()
        await control.wait_all_voters()
        rng = self._shrink_rng
        removed = []
        while self._grown:
            node = rng.choice(self.nodes)
            await control.remove_member(node)
            removed.append(node)
            self._grown -= 1
        if removed:
            await control.wait_all_voters()
            self.heal_note = f"; shrank by {_group(removed)}"

    async def _partition(self, kind: str, rng: random.Random
                         ) -> tuple[frozenset[Link] | None, str, tuple[int, ...]]:
        """The links to cut, a description, and the nodes on the smaller side."""
        nodes = self.nodes
        shuffled = nodes[:]
        rng.shuffle(shuffled)
        if kind in ("isolate-leader", "isolate-follower"):
            leader = await self._leader()
            if leader is None:
                return None, "skipped: no leader", ()
            if kind == "isolate-leader":
                node = leader
            else:
                node = rng.choice([n for n in nodes if n != leader])
            return (isolate_links(node, nodes), f"n{node} cut off from {_names(nodes, node)}",
                    (node,))
        if kind == "split":
            minority = sorted(shuffled[:(len(nodes) - 1) // 2])
            majority = sorted(shuffled[len(minority):])
            return (partition_links([minority, majority]),
                    f"split {_group(minority)} | {_group(majority)}", tuple(minority))
        if kind == "bridge":
            bridge, rest = shuffled[0], shuffled[1:]
            half = len(rest) // 2
            left, right = sorted(rest[:half]), sorted(rest[half:])
            return (bridge_links(left, right),
                    f"bridge n{bridge} between {_group(left)} and {_group(right)}", (bridge,))
        if kind == "one-way":
            from_leader, anyone = rng.random() < 0.5, rng.choice(nodes)
            src = (await self._leader() if from_leader else None) or anyone
            dst = rng.choice([n for n in nodes if n != src])
            return (frozenset({(src, dst)}), f"n{src} -> n{dst} lost (n{dst} -> n{src} works)",
                    (src, dst))
        raise ValueError(f"unknown fault kind {kind!r}")

    async def heal(self) -> None:
        """Undo whatever is in force: heal the net, resume paused nodes, restart killed ones."""
        if self._net_dirty:
            await self.net.heal()
            self._net_dirty = False
        self._stop_traffic()
        for node in sorted(self._paused):
            await self.control.resume(node)
        self._paused.clear()
        for node in sorted(self._filled):
            await self.control.free_disk(node)  # type: ignore[attr-defined]
            await self.control.start(node)  # if the full disk stopped it
        self._filled.clear()
        for node in sorted(self._killed):
            await self.control.start(node)
        self._killed.clear()
        if self._member_dirty:
            await self._heal_members()
            self._member_dirty = False


# -- traffic faults (each runs until cancelled) --------------------------------------------

NEMESIS_BIG = b"nemesis:big"  # keys outside the workload's (chaos.workload: k0, k1, ...)
NEMESIS_HUGE = b"nemesis:huge"


async def _cluster_id(targets: Sequence[LiveTarget]) -> str:
    """The cluster id from any node's INFO raft ("" if none answers: Hellos then carry a
    wrong id, which is hostile too)."""
    for t in targets:
        info = await info_raft(t.client, patience=2.0)
        if info and info.get("cluster_id"):
            return info["cluster_id"]
    return ""


async def _read_reply(stream: trio.abc.Stream, patience: float) -> bytes:
    """What the node answers within ``patience`` s (one read; enough for +OK / -ERR)."""
    with trio.move_on_after(patience):
        return await stream.receive_some(65536)
    return b""


async def _open_client(addr: tuple[str, int], rcvbuf: int | None = None) -> trio.abc.Stream:
    """A client connection as the workload's: under ``run --tls``, TLS and AUTH first
    (tlsatk: plain text, the traffic faults met the TLS port's handshake refusal and
    tested nothing there). ``rcvbuf``: set before the handshake (a slow reader)."""
    tcp = await trio.open_tcp_stream(*addr)
    if rcvbuf is not None:
        tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    security = client_security()
    if security is None:
        return tcp
    try:
        stream = await security.wrap(tcp, addr[0])
        if (auth := security.auth_args()) is not None:
            await stream.send_all(encode_command(*(a.encode() for a in auth)))
            await _read_reply(stream, 10.0)
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


async def _slow_reader(addr: tuple[str, int]) -> None:
    stream = await _open_client(addr, rcvbuf=4096)
    async with stream:
        await stream.send_all(encode_command(b"SET", NEMESIS_BIG, b"v" * (1 << 20)))
        await _read_reply(stream, 10.0)
        await stream.send_all(encode_command(b"GET", NEMESIS_BIG) * 256)  # blocks: fine
        await trio.sleep_forever()


async def _huge_values(addr: tuple[str, int], stats: LiveStats) -> None:
    """SET a value just under the default --max-request-bytes (8 MiB), and every third
    time one over it (the node answers a protocol error and closes)."""
    at_limit = b"h" * (8 * 1024 * 1024 - 1024)
    over = b"h" * (9 * 1024 * 1024)
    n = 0
    while True:
        try:
            stream = await _open_client(addr)
        except (OSError, trio.BrokenResourceError):
            stats.refused += 1
            await trio.sleep(0.2)  # the node is down or paused
            continue
        stats.connections += 1
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, OSError):
                while True:
                    n += 1
                    value = over if n % 3 == 0 else at_limit
                    await stream.send_all(encode_command(b"SET", NEMESIS_HUGE, value))
                    stats.client_inputs += 1
                    reply = await _read_reply(stream, 10.0)
                    if not reply or value is over:
                        break
                    await trio.sleep(0.1)


async def _hold_connections(addr: tuple[str, int], count: int) -> None:
    """Open up to ``count`` connections (until three in a row do not connect) and hold them."""
    held: list[trio.SocketStream] = []
    try:
        misses = 0
        while len(held) < count and misses < 3:
            with trio.move_on_after(0.5) as scope:
                try:
                    held.append(await trio.open_tcp_stream(*addr))
                    misses = 0
                except OSError:
                    misses += 1
            misses += scope.cancelled_caught
        await trio.sleep_forever()
    finally:
        for stream in held:
            with contextlib.suppress(OSError):
                stream.socket.close()


def _group(nodes: Iterable[int]) -> str:
    return "{" + ",".join(f"n{n}" for n in nodes) + "}"


def _names(nodes: Iterable[int], but: int) -> str:
    return _group(n for n in nodes if n != but)
