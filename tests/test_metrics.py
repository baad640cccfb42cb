"""The per-command instruments of raftkv.metrics: Prometheus bucket semantics, bounded
labels, and nothing recorded when metrics are off."""

from __future__ import annotations

import time
from types import SimpleNamespace

from raftkv.metrics import (
    COMMAND_BUCKETS,
    KNOWN_COMMANDS,
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
