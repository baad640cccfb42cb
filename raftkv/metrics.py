"""Prometheus metrics of one node, built on ``prometheus_client`` (one registry per node).

Nothing on a hot path calls into prometheus_client: every series is *collected at scrape
time* by this module's collectors, which hand plain numbers to prometheus_client's metric
families (so the exposition format, names, labels, types and buckets stay the library's):

- Gauges and most counters are read from state the node keeps anyway (``NodeCollector``):
  term, role, indexes, keys, connections, peer links, follower lag, and the counters in
  ``node.stats`` (plain ``int += 1`` where the event happens).
- What cannot be read back later is counted inline into plain Python numbers owned by the
  node, in O(1) on the event loop, no locks: per command (the hot path) a counter and a
  histogram bucket (``bisect``) of ``CommandStats``; per group commit and per snapshot a
  ``Histogram`` / ``Counter`` of this module (the same bisect and adds). A
  ``prometheus_client`` Counter plus Histogram with labels cost ~7 us per command (each
  value behind a lock); ``tests/bench/bench_overheads_micro.py`` measures what these cost.
  Without ``--metrics-addr`` the per-command instruments are switched off (``track`` does
  nothing), so a node that is not scraped pays nothing per command.

Labels stay bounded: ``command`` is a known command name or ``other`` (never a key or a
client's word), ``peer`` a member id, ``kind`` one of three read paths.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from raftkv.kv import COMMANDS
from raftkv.raft import Role


class Completion(Protocol):
    """What ``NodeMetrics.track`` times: a reply still to come (raftkv.node.pending's
    ``Pending`` is one). A protocol, so metrics does not import the node layer above it."""

    @property
    def done(self) -> bool: ...

    def add_callback(self, callback: Callable[[Any], None]) -> None: ...

class Node(Protocol):
    """What the collectors read from the node (raftkv.node.node.Node, which builds its
    metrics: a protocol, so this module does not import the node back)."""

    id: int
    stats: dict[str, int]
    kv: Any
    core: Any  # from the moment the storage is open
    storage: Any
    transport: Any

    @property
    def applied(self) -> int: ...

# Commands the client port answers itself (raftkv.server.commands.LOCAL) or that real
# clients send; anything else is counted as "other" so a client cannot grow the label set.
_LOCAL_COMMANDS = ("ping", "echo", "quit", "select", "hello", "client", "command", "config",
                   "info", "raft")
KNOWN_COMMANDS = frozenset(
    [name.decode() if isinstance(name, bytes) else str(name) for name in COMMANDS]
    + list(_LOCAL_COMMANDS)
)
READ_KINDS = ("leader", "follower", "stale")
# The *_created series double every counter's output and no dashboard here reads them.
disable_created_metrics()

# Latency buckets around what this store does: sub-millisecond local replies up to the
# 5 s request timeout.
COMMAND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
FSYNC_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def command_label(name: bytes) -> str:
    """The ``command`` label of a command name: lower case if known, else ``other``."""
    try:
        text = name.decode("ascii").lower()
    except UnicodeDecodeError:
        return "other"
    return text if text in KNOWN_COMMANDS else "other"


def cumulative(bounds: tuple[float, ...], buckets: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus's cumulative ``(le, count)`` pairs, ``+Inf`` last."""
    out, running = [], 0
    for bound, n in zip((*map(floatToGoString, bounds), "+Inf"), buckets, strict=True):
        running += n
        out.append((bound, running))
    return out


class CommandStats:
    """One command label's counter and latency histogram, as plain numbers."""

    __slots__ = ("buckets", "received", "total")

    def __init__(self) -> None:
        self.received = 0
        self.total = 0.0
        self.buckets = [0] * (len(COMMAND_BUCKETS) + 1)  # the last one is +Inf

    def observe(self, started: float, _value: Any = None) -> None:
        seconds = time.perf_counter() - started
        self.total += seconds
        self.buckets[bisect_left(COMMAND_BUCKETS, seconds)] += 1  # le: bound >= seconds

    def cumulative(self) -> list[tuple[str, float]]:
        return cumulative(COMMAND_BUCKETS, self.buckets)


class Histogram:
    """A histogram as plain numbers (``observe``: a bisect and two adds, no lock), exposed
    by ``InstrumentCollector`` like prometheus_client's Histogram of the same name."""

    __slots__ = ("bounds", "buckets", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.total += value
        self.buckets[bisect_left(self.bounds, value)] += 1  # le: bound >= value

    def cumulative(self) -> list[tuple[str, float]]:
        return cumulative(self.bounds, self.buckets)


class LabeledHistogram:
    """Histograms by one label's value (``labels(value).observe(x)``, as prometheus_client);
    the values are the caller's constants, never a client's words."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.children: dict[str, Histogram] = {}

    def labels(self, value: str) -> Histogram:
        child = self.children.get(value)
        if child is None:
            child = self.children[value] = Histogram(self.bounds)
        return child


class Counter:
    """A counter as a plain number (``inc``), exposed by ``InstrumentCollector``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class NodeMetrics:
    """The registry and inline instruments of one node (``node.metrics``)."""

    def __init__(self, node: Node, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.command_stats: dict[str, CommandStats] = {}  # by label
        self._by_name: dict[bytes, CommandStats] = {}  # by the name as the client sent it
        self.registry.register(NodeCollector(node, self.command_stats))
        # Updated by the core driver (each group commit) and the snapshotter.
        self.wal_fsync = Histogram(FSYNC_BUCKETS)
        self.wal_bytes = Counter()
        self.snapshot_duration = LabeledHistogram(SNAPSHOT_BUCKETS)
        self.registry.register(InstrumentCollector(self))

    def add_client_port(self, connections: Callable[[], int]) -> None:
        """Export the client port's open connections (it registers itself here: the node
        does not know the port that serves it)."""
        self.registry.register(ClientPortCollector(connections))

    def track(self, name: bytes, pending: Completion) -> None:
        """Count a command and time it until ``pending`` is set (O(1), no locks)."""
        if not self.enabled:
            return
        stats = self._by_name.get(name)
        if stats is None:
            stats = self._stats_for(name)
        stats.received += 1
        if pending.done:
            stats.buckets[0] += 1  # answered at once (local commands, immediate errors)
            return
        pending.add_callback(partial(stats.observe, time.perf_counter()))

    def _stats_for(self, name: bytes) -> CommandStats:
        label = command_label(name)
        stats = self.command_stats.get(label)
        if stats is None:
            stats = self.command_stats[label] = CommandStats()
        if len(self._by_name) < 4 * len(KNOWN_COMMANDS):  # bounded: case variants
            self._by_name[name] = stats
        return stats


class InstrumentCollector(Collector):
    """The WAL and snapshot instruments, as prometheus_client's Histogram and Counter of
    these names and buckets would expose them."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        fsync = HistogramMetricFamily("raftkv_wal_fsync_duration_seconds",
                                      "One group commit: write and fsync of a WAL batch.")
        fsync.add_metric([], m.wal_fsync.cumulative(), m.wal_fsync.total)
        yield fsync
        yield _counter("raftkv_wal_bytes", "Bytes written to the WAL.", m.wal_bytes.value)
        snapshots = HistogramMetricFamily(
            "raftkv_snapshot_duration_seconds",
            "Taking a snapshot (encode, write, switch) or installing a leader's.",
            labels=["op"])
        for op, child in m.snapshot_duration.children.items():
            snapshots.add_metric([op], child.cumulative(), child.total)
        yield snapshots


class ClientPortCollector(Collector):
    """``raftkv_client_connections``, read from the client port at scrape time."""

    def __init__(self, connections: Callable[[], int]) -> None:
        self.connections = connections

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield _gauge("raftkv_client_connections", "Open client connections.",
                     self.connections())


class NodeCollector(Collector):
    """Everything read from the node's own state when Prometheus scrapes."""

    def __init__(self, node: Node, command_stats: dict[str, CommandStats]) -> None:
        self.node = node
        self.command_stats = command_stats

    def describe(self) -> list[Metric]:
        return []  # families vary with the members; collect() is the truth

    def collect(self) -> Iterator[Metric]:
        node = self.node
        if not hasattr(node, "core"):  # scraped before storage is open
            return
        core = node.core
        stats = node.stats
        yield _gauge("raftkv_term", "Current Raft term.", core.term)
        yield _gauge("raftkv_is_leader", "1 if this node is the leader.",
                     int(core.role is Role.LEADER))
        yield _gauge("raftkv_commit_index", "Highest log index known committed.",
                     core.commit_index)
        yield _gauge("raftkv_applied_index", "Highest log index applied to the state machine.",
                     node.applied)
        yield _gauge("raftkv_last_log_index", "Index of the last entry in the log.",
                     core.last_index)
        yield _gauge("raftkv_snapshot_index", "Index covered by the latest snapshot.",
                     node.storage.snapshot_meta().index)
        yield _gauge("raftkv_keys", "Keys in the state machine.", len(node.kv))
        yield _counter("raftkv_leader_changes", "Times this node saw a new leader.",
                       stats["leader_changes"])
        yield _counter("raftkv_proposals", "Writes proposed to the log by this node as leader.",
                       stats["proposed"])
        yield _counter("raftkv_proposals_failed",
                       "Proposals answered LOST or UNKNOWN (leader change, timeout).",
                       stats["proposals_failed"])
        yield _counter("raftkv_forwarded", "Commands forwarded to the leader.",
                       stats["forwarded"])
        reads = CounterMetricFamily("raftkv_reads", "Reads by path: ReadIndex on the leader, "
                                    "ReadIndex through the leader, stale (test-only).",
                                    labels=["kind"])
        for kind in READ_KINDS:
            reads.add_metric([kind], stats[f"reads_{kind}"])
        yield reads
        yield from self._commands()
        yield from self._peers()

    def _commands(self) -> Iterator[Metric]:
        received = CounterMetricFamily("raftkv_commands",
                                       "Commands received on the client port.",
                                       labels=["command"])
        duration = HistogramMetricFamily(
            "raftkv_command_duration_seconds",
            "From a command's parse to its reply being ready (forwarding, commit or read "
            "confirmation included).", labels=["command"])
        for label, stats in sorted(self.command_stats.items()):
            received.add_metric([label], stats.received)
            duration.add_metric([label], stats.cumulative(), stats.total)
        yield received
        yield duration

    def _peers(self) -> Iterator[Metric]:
        node, core = self.node, self.node.core
        up = GaugeMetricFamily("raftkv_peer_up", "1 if our outbound link to the peer is up.",
                               labels=["peer"])
        queue = GaugeMetricFamily("raftkv_peer_send_queue",
                                  "Messages waiting in the peer's send queue.", labels=["peer"])
        transport = getattr(node, "transport", None)
        for peer_id, link in sorted((transport.stats() if transport else {}).items()):
            up.add_metric([str(peer_id)], int(link.connected))
            queue.add_metric([str(peer_id)], link.queued)
        yield up
        yield queue
        lag = GaugeMetricFamily("raftkv_follower_lag_entries",
                                "Leader only: entries a member's log is behind ours.",
                                labels=["peer"])
        if core.role is Role.LEADER:
            last = core.last_index
            for member in core.cluster_config.members:
                if member.id == node.id:
                    continue
                progress = core.progress(member.id)
                if progress is not None:
                    lag.add_metric([str(member.id)], max(0, last - progress.match))
        yield lag


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
