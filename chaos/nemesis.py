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
line, and is restarted once the space is freed).

Membership changes need a backend whose peer addresses are the same for every node (a
CONFIG entry carries one address per member for everyone), so only ``--net none`` has
them; ``all`` skips them elsewhere.

The fault kinds recorded in the history's fault windows are the specific ones (kill,
kill-leader, pause, isolate-leader, isolate-follower, split, bridge, one-way, latency,
replace, grow, disk-full), so availability is reported per kind.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import attrs
import trio

Link = tuple[int, int]

NEMESES = ("kill", "kill-leader", "pause", "partition", "one-way", "latency", "member")
PARTITIONS = ("isolate-leader", "isolate-follower", "split", "bridge")
MEMBER_KINDS = ("replace", "grow")
RESOURCE_NEMESES = ("disk-full",)  # need a Control with disks (DiskControl); not in "all"
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
        elif item in NEMESES or item in PARTITIONS or item in RESOURCE_NEMESES:
            names.append(item)
        else:
            raise ValueError(f"unknown nemesis {item!r}; choose from "
                             f"{', '.join((*NEMESES, *PARTITIONS, *RESOURCE_NEMESES))}, "
                             "all, none")
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
             "disk-full": (3.0, 6.0)}
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


def _group(nodes: Iterable[int]) -> str:
    return "{" + ",".join(f"n{n}" for n in nodes) + "}"


def _names(nodes: Iterable[int], but: int) -> str:
    return _group(n for n in nodes if n != but)
