"""What one ``raftkv-chaos run`` is asked to do and what it found: the options, the
material gathered in the event loop, the checks' outcomes. Plain data, so the driver
(chaos.run) and the report (chaos.report) both import it and not each other.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from chaos import checks as chk
from chaos.counters import Verdict
from chaos.history import Op, Value
from chaos.linearizability import DEFAULT_MAX_STATES, Result
from chaos.nemesis import DEFAULT_NEMESES, Fault, Injected
from chaos.workload import Mix


@attrs.frozen
class RunOptions:
    nodes: int = 3
    duration: float = 60.0
    nemeses: tuple[str, ...] = DEFAULT_NEMESES
    clients: int = 10
    keys: int = 8
    seed: int = 0
    out: Path = Path("results")
    net: str = "proxy"
    rate: float = 10.0  # ops/s per client
    op_timeout: float = 2.5
    mix: Mix = attrs.field(factory=Mix)
    unsafe_stale_reads: bool = False  # test only: the nodes answer stale reads
    endpoints: tuple[str, ...] = ()  # docker: the nodes' client addresses, node 1 first
    project: str | None = None
    docker_network: str | None = None
    engine: str = "docker"  # docker: the CLI that drives the containers (docker or podman)
    reconnect: str = "alias"  # docker, netns: heal with the node's name back, or "plain"
    key_prefix: str = "k"  # docker: unique per run (the attached cluster keeps old keys)
    schedule: tuple[Fault, ...] | None = None  # None: drawn from the seed
    check_budget: int = DEFAULT_MAX_STATES
    check_timeout: float = 300.0
    max_election: float = 10.0  # a leader fault must be followed by an ok write within this
    min_calm_up: float = 0.8  # share of 1 s windows outside faults that must be up
    quiet: bool = False
    counters: int = 2  # session clients retrying INCR/APPEND (chaos.counters): exactly-once
    unsafe_counters_without_sessions: bool = False  # test only: the check must then fail
    tls: bool = False  # TLS on both ports and a client password (secure_cluster)
    watchers: int = 0  # change-feed watchers (chaos.watchers), checked by chaos.watch_check
    unsafe_watch_drop: int = 0  # test only: watcher 0 forgets every n-th change (a gap)


@attrs.frozen
class Collected:
    """What the event loop gathered: the raw material of the checks."""

    history: tuple[Op, ...]
    faults: tuple[Injected, ...]
    skipped: tuple[str, ...]
    final: dict[str, Value]
    crashes: tuple[str, ...]
    end: float
    leader_at_start: int
    exactly_once: Verdict | None = None  # None: no counter clients in this run
    # When the final reads ran (run-relative seconds): with TTLs their time matters.
    final_span: tuple[float, float] | None = None
    watch: Verdict | None = None  # None: no watchers in this run


@attrs.frozen
class CheckOutcome:
    name: str
    ok: bool
    summary: str
    counted: bool = True  # False: reported, but judged by another check


@attrs.frozen
class RunResult:
    options: RunOptions
    collected: Collected
    linearizability: Result
    durability: chk.Durability
    availability: chk.AvailabilityReport
    checks: tuple[CheckOutcome, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.counted)

    @property
    def exit_code(self) -> int:
        if self.ok:
            return 0
        failed = [c for c in self.checks if c.counted and not c.ok]
        only_unknown = all(c.name == "linearizability" for c in failed) and (
            self.linearizability.verdict == "unknown")
        return 2 if only_unknown else 1

    @property
    def verdict(self) -> str:
        ops = len(self.collected.history)
        faults = len(self.collected.faults)
        if self.ok:
            return f"PASS: {ops} operations, {faults} faults, every check held"
        failed = ", ".join(c.name for c in self.checks if c.counted and not c.ok)
        return f"FAIL: {failed} ({ops} operations, {faults} faults)"
