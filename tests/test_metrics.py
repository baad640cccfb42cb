"""The per-command instruments of raftkv.metrics: Prometheus bucket semantics, bounded
labels, and nothing recorded when metrics are off."""

from __future__ import annotations

import time
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from raftkv.metrics import (
    COMMAND_BUCKETS,
    FSYNC_BUCKETS,
    KNOWN_COMMANDS,
    SNAPSHOT_BUCKETS,
    CommandStats,
    NodeMetrics,
    command_label,
)
from raftkv.node.pending import Pending


def test_buckets_are_cumulative_with_le_semantics() -> None:
    stats = CommandStats()
    now = time.perf_counter()
    stats.observe(now - 0.003)  # in (0.0025, 0.005]
    stats.observe(now - 100.0)  # past the last bound: +Inf only
    cumulative = dict(stats.cumulative())
    assert cumulative["0.0025"] == 0 and cumulative["0.005"] == 1
    assert cumulative[str(COMMAND_BUCKETS[-1])] == 1 and cumulative["+Inf"] == 2
    assert 100.003 <= stats.total < 101


def test_labels_are_bounded_and_off_means_nothing_recorded() -> None:
    assert command_label(b"SET") == "set" and command_label(b"no-such") == "other"
    assert command_label(b"\xff\xfe") == "other"
    m = NodeMetrics(SimpleNamespace())  # type: ignore[arg-type]
    for i in range(5000):
        m.track(f"junk{i}".encode(), Pending.of(None))
    pending = Pending()
    m.track(b"GET", pending)
    pending.set(b"v")
    assert set(m.command_stats) == {"other", "get"}
    assert m.command_stats["other"].received == 5000
    assert m.command_stats["get"].cumulative()[-1] == ("+Inf", 1)
    assert len(m._by_name) <= 4 * len(KNOWN_COMMANDS)
    off = NodeMetrics(SimpleNamespace(), enabled=False)  # type: ignore[arg-type]
    off.track(b"GET", Pending.of(None))
    assert off.command_stats == {}


def test_wal_and_snapshot_instruments_expose_what_prometheus_client_would() -> None:
    """The plain-number instruments against prometheus_client's own Histogram and Counter
    fed the same values: the same exposition text, names, types, buckets and labels."""
    ours = NodeMetrics(SimpleNamespace())  # type: ignore[arg-type]
    theirs = CollectorRegistry()
    fsync = Histogram("raftkv_wal_fsync_duration_seconds",
                      "One group commit: write and fsync of a WAL batch.",
                      buckets=FSYNC_BUCKETS, registry=theirs)
    wal_bytes = Counter("raftkv_wal_bytes", "Bytes written to the WAL.", registry=theirs)
    snapshots = Histogram("raftkv_snapshot_duration_seconds",
                          "Taking a snapshot (encode, write, switch) or installing a leader's.",
                          ["op"], buckets=SNAPSHOT_BUCKETS, registry=theirs)

    def both() -> tuple[bytes, bytes]:
        mine = generate_latest(ours.registry)
        wanted = [line for line in mine.splitlines()
                  if b"_wal_" in line or b"raftkv_snapshot_duration" in line]
        return b"\n".join(wanted), generate_latest(theirs).rstrip(b"\n")

    mine, reference = both()
    assert mine == reference and b'le="0.0005"' in mine  # nothing observed yet: zeros
    for seconds in (0.0001, 0.0005, 0.0007, 0.002, 0.3, 7.0):  # 0.0005: on a bound (le)
        ours.wal_fsync.observe(seconds)
        fsync.observe(seconds)
    for n in (4096, 123):
        ours.wal_bytes.inc(n)
        wal_bytes.inc(n)
    for op, seconds in (("take", 0.2), ("install", 45.0), ("take", 0.01)):
        ours.snapshot_duration.labels(op).observe(seconds)
        snapshots.labels(op).observe(seconds)
    mine, reference = both()
    assert mine == reference and b'op="install"' in mine
