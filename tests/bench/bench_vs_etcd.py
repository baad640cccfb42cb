"""RaftKV against etcd 3.4 on the same machine: the figures of issue 15, as medians of rounds.

Run: .venv/bin/python tests/bench/bench_vs_etcd.py [--rounds 3] [--quick] [--dir DIR]
                                                   [--failover-kills K] [--stability S] [--scale R]

Installs Debian's ``etcd-server``, ``etcd-client`` and ``wrk`` if missing (apt-get, as root
or through sudo), then starts a 3-node etcd (fsync on: its default) and a 3-node RaftKV
(chaos.cluster.LocalCluster, fsync always) on free loopback ports, both on the disk of
--dir, and keeps both up for the whole run. Each round measures, with the two systems
alternating (the order flips every round, so neither always gets the quieter moment):

- SET c50: ``redis-benchmark -t set -c 50`` on the RaftKV leader; ``wrk -c 50`` with a lua
  script POSTing /v3/kv/put (base64 key/value, the same 3-byte value) to etcd's leader.
- SET c1: the same with one connection: ops/s, p50 and p99.
- linearizable GET c50: RaftKV's leader and a follower (ReadIndex either way) against
  etcd's /v3/kv/range with serializable=false (its default: linearizable) on the leader.
- SET c50 -P16 (RaftKV only: the aim compares it with etcd's unpipelined SET c50).
- failover (RaftKV only): --failover-kills rounds of tests/bench/bench_failover.py's
  kill -9 the leader, first acknowledged write through a survivor.

It prints every round's figures, the medians, the ratios RaftKV/etcd with the issue's aim
for each, the disk's raw fsync time (write+fsync of 100 bytes, tests/bench/bench_wal.py),
the load average (the machine is shared: say so with the figures) and any leader change of
either system outside the failover kills. ``--stability S`` adds S seconds of c50 SET (over
100k random keys) plus c50 GET on a separate RaftKV cluster snapshotting every 10k entries,
with one follower killed a quarter of the way in and restarted once the leader's log is
compacted past it (so it catches up by snapshot under the load), and reports leader changes
(bench_latency.py's INFO watcher) and whether that follower installed a snapshot. With
``--rounds 0 --stability S --failover-kills K`` the K kills follow in the same run.
``--scale R`` adds issue 15's 5-node row: R rounds of tests/bench/bench_scale.py (a 3-node
and a 5-node RaftKV, SET c50 on each leader, alternating; the 5/3 ratio, aim >= 0.7, and
the CPU per SET of each) on clusters of their own, after the other rows.
``--baseline REF`` adds a third system: a second 3-node RaftKV running the code of git ref
REF (``git archive`` into the scratch directory), measured in the same rounds, so a change
is judged before/after in one invocation on the same machine state; with ``--stability S
--stability-runs N`` too, the stability run is repeated N times on each tree, alternating
(A B B A ...), and a table pairs their leader changes and longest loop stalls. Every
process started is killed on exit.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
from bench_failover import one_round
from bench_latency import Watcher
from bench_scale import measure as measure_scale
from bench_wal import raw_fsync_rate
from common import (
    HOST,
    BaselineCluster,
    BenchRun,
    CpuSampler,
    baseline_cluster,
    export_tree,
    kill_group,
    load_line,
    percentile,
    raft_cluster,
    redis_benchmark,
    revive_dead,
    roles,
    save_logs,
    scratch_dir,
)

from chaos.cluster import LocalCluster, free_ports
from raftkv.probe import call, parse_info

PACKAGES = {"etcd": "etcd-server", "etcdctl": "etcd-client", "wrk": "wrk",
            "redis-benchmark": "redis-tools"}
KEY, VALUE = b"key:__rand_int__", b"xxx"  # what redis-benchmark -t set,get uses by default


def ensure_packages() -> None:
    """apt-get install the Debian packages whose binary is missing (as .ci/debian-packages)."""
    need = sorted({pkg for exe, pkg in PACKAGES.items() if shutil.which(exe) is None})
    if not need:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"install these packages (or their equivalents) first: {need}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(need)} (apt-get)", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *need], check=True, env=env,
                   stdout=subprocess.DEVNULL)


# -- etcd -------------------------------------------------------------------------------


class Etcd:
    """A started 3-node etcd cluster on loopback (default fsync behaviour)."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        ports = free_ports(2 * nodes)
        self.clients = [f"http://{HOST}:{ports[2 * i]}" for i in range(nodes)]
        self.peers = [f"http://{HOST}:{ports[2 * i + 1]}" for i in range(nodes)]
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        initial = ",".join(f"e{i}={p}" for i, p in enumerate(self.peers))
        for i, (client, peer) in enumerate(zip(self.clients, self.peers, strict=True)):
            log = open(self.workdir / f"e{i}.log", "wb")  # noqa: SIM115 - for the child
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", f"e{i}", "--data-dir", str(self.workdir / f"e{i}"),
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"bench-{os.getpid()}"],
                stdout=log, stderr=log, start_new_session=True))
            log.close()

    def close(self) -> None:
        for proc in self.procs:
            kill_group(proc)

    def status(self, url: str) -> dict[str, object] | None:
        try:
            return post(url + "/v3/maintenance/status", {}, timeout=2.0)
        except (OSError, ValueError):
            return None

    def leader(self, timeout: float = 30.0) -> str:
        """Client URL of the member every member names as leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = [self.status(u) for u in self.clients]
            if all(st):
                leaders = {str(s["leader"]) for s in st if s}  # type: ignore[index]
                for url, s in zip(self.clients, st, strict=True):
                    if len(leaders) == 1 and s and str(s["header"]["member_id"]) in leaders:  # type: ignore[index]
                        return url
            time.sleep(0.1)  # polling other processes: there is no event to wait on
        raise TimeoutError(f"etcd: no agreed leader after {timeout} s; logs in {self.workdir}")

    def raft_terms(self) -> list[int]:
        """Each member's raft term (-1: no answer); printed once to show the field name."""
        out = []
        for url in self.clients:
            s = self.status(url) or {}
            out.append(int(s.get("raftTerm", s.get("raft_term", -1))))  # type: ignore[call-overload]
        return out


def post(url: str, body: dict[str, object], timeout: float) -> dict[str, object]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def etcd_cluster(workdir: Path) -> Iterator[Etcd]:
    etcd = Etcd(workdir)
    try:
        etcd.start()
        etcd.leader()
        yield etcd
    finally:
        etcd.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


LUA = """
wrk.method = "POST"
wrk.path = "{path}"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {{\\"requests\\": %d, \\"us\\": %d, \\"p50\\": %d, \\"p99\\": %d, "
    .. "\\"errors\\": %d, \\"status\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@attrs.frozen
class Figure:
    """One measured load: ops/s and latency percentiles (ms); errors seen."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: str = ""


def wrk(work: Path, url: str, path: str, body: dict[str, object], clients: int,
        seconds: float) -> Figure:
    """``wrk`` POSTing ``body`` to ``url + path`` for ``seconds`` over ``clients`` connections."""
    script = work / f"wrk-{path.strip('/').replace('/', '-')}.lua"
    script.write_text(LUA.format(path=path, body=json.dumps(body)))
    threads = min(clients, os.cpu_count() or 1)
    proc = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds:g}s",
         "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        return Figure(0.0, 0.0, 0.0, f"wrk failed: {proc.stdout[-300:]} {proc.stderr[-300:]}")
    r = json.loads(line[len("WRKJSON "):])
    errors = ", ".join(f"{v} {k}" for k, v in (("socket errors", r["errors"]),
                                                ("non-2xx", r["status"])) if v)
    return Figure(r["requests"] / (r["us"] / 1e6), r["p50"] / 1000, r["p99"] / 1000, errors)


def rb(port: int, test: str, requests: int, clients: int, pipeline: int = 1) -> Figure:
    run: BenchRun = redis_benchmark(port, test.lower(), requests, clients, pipeline)
    row = run.rows.get(test)
    errors = "; ".join(run.alerts)[:300]
    if row is None:
        return Figure(0.0, 0.0, 0.0, errors or "no result")
    return Figure(row.rps, row.p50_ms, row.p99_ms, errors)


# -- the rows ---------------------------------------------------------------------------


@attrs.frozen
class Sizes:
    seconds: float  # wrk duration per etcd measurement
    n50: int  # redis-benchmark -n at c50
    n1: int  # ... at c1
    nP: int  # ... at c50 -P16


def etcd_round(etcd: Etcd, work: Path, z: Sizes) -> dict[str, Figure]:
    url = etcd.leader()
    put = {"key": b64(KEY), "value": b64(VALUE)}
    rng = {"key": b64(KEY), "serializable": False}
    return {
        "SET c50": wrk(work, url, "/v3/kv/put", put, 50, z.seconds),
        "SET c1": wrk(work, url, "/v3/kv/put", put, 1, z.seconds),
        "GET c50 leader": wrk(work, url, "/v3/kv/range", rng, 50, z.seconds),
    }


def raft_round(cluster: LocalCluster, z: Sizes) -> dict[str, Figure]:
    """The RaftKV rows. A run that a leader change broke (redis-benchmark stops at the first
    error reply) is run again on the new leader, at most twice, and says so."""
    loads = [("SET c50", False, "SET", z.n50, 50, 1), ("SET c1", False, "SET", z.n1, 1, 1),
             ("GET c50 leader", False, "GET", z.n50, 50, 1),
             ("GET c50 follower", True, "GET", z.n50, 50, 1),
             ("SET c50 -P16", False, "SET", z.nP, 50, 16)]
    out = {}
    for row, on_follower, test, n, clients, pipeline in loads:
        notes = []
        for _ in range(3):
            for death in revive_dead(cluster):
                print(f"  {death} (restarted)")
            leader, followers = roles(cluster)
            port = cluster.client_addr(followers[0] if on_follower else leader)[1]
            term = raft_terms(cluster)
            fig = rb(port, test, n, clients, pipeline)
            if fig.rps > 0 and not fig.errors:
                break
            notes.append(f"retried: terms {term} -> {raft_terms(cluster)}: {fig.errors[:120]}")
        out[row] = attrs.evolve(fig, errors="; ".join([*notes, fig.errors]).strip("; "))
    return out


def raft_terms(cluster: LocalCluster) -> list[int]:
    return [int(i["term"]) if i else -1 for i in (cluster.info(n, 2.0) for n in cluster.nodes)]


def failovers(cluster: LocalCluster, kills: int) -> list[float | None]:
    """``kills`` rounds of bench_failover: ms from kill -9 of the leader to the first OK."""
    out: list[float | None] = []
    for _ in range(kills):
        for death in revive_dead(cluster):
            print(f"  {death} (restarted)")
        r = one_round(cluster, timeout=10.0)
        out.append(r["first_ok_ms"])  # type: ignore[arg-type]
    return out


def fmt(f: Figure | None) -> str:
    if f is None:
        return "-"
    return f"{f.rps:8.0f}/s p50 {f.p50_ms:6.2f} p99 {f.p99_ms:6.2f} ms" + (
        f"  [{f.errors}]" if f.errors else "")


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def med(figs: list[Figure], attr: str) -> float:
    """Median over the runs that produced a figure (a run every retry failed has none)."""
    ok = [getattr(f, attr) for f in figs if f.rps > 0]
    return statistics.median(ok) if ok else float("nan")


# Each aim: (label, raftkv row, attribute, etcd row, factor, lower_is_better)
AIMS = [
    ("SET c50 ops/s >= 2x etcd", "SET c50", "rps", "SET c50", 2.0, False),
    ("SET c1 ops/s >= etcd", "SET c1", "rps", "SET c1", 1.0, False),
    ("SET c1 p50 <= etcd", "SET c1", "p50_ms", "SET c1", 1.0, True),
    ("GET c50 leader >= 3x etcd", "GET c50 leader", "rps", "GET c50 leader", 3.0, False),
    ("GET c50 follower >= 3x etcd", "GET c50 follower", "rps", "GET c50 leader", 3.0, False),
    ("SET c50 -P16 >= 8x etcd SET c50", "SET c50 -P16", "rps", "SET c50", 8.0, False),
]


def report(rounds: list[dict[str, dict[str, Figure]]], fails: dict[str, list[float | None]],
           fsync_us: float) -> None:
    systems = [name for name in rounds[0] if name != "etcd"]
    rows = list(rounds[0]["raftkv"])
    print(f"\nmedians of {len(rounds)} rounds (disk write+fsync {fsync_us:.0f} us)")
    print(f"{'row':<18} {'system':<14} {'ops/s, latency':>40}   x etcd ops/s")
    for row in rows:
        for name in [*systems, "etcd"]:
            figs = [r[name][row] for r in rounds if row in r[name]]
            if not figs:
                continue
            failed = sum(f.rps == 0 for f in figs)
            m = Figure(med(figs, "rps"), med(figs, "p50_ms"), med(figs, "p99_ms"),
                       f"{failed} of {len(figs)} rounds failed" if failed else "")
            erow = "GET c50 leader" if row == "GET c50 follower" else row
            efigs = [r["etcd"][erow] for r in rounds if erow in r["etcd"]]
            ratio = (f"{_div(m.rps, med(efigs, 'rps')):6.2f}" if name != "etcd" and efigs
                     else "")
            print(f"{row:<18} {name:<14} {fmt(m):>40}   {ratio}")
    for name in systems:
        print(f"\naims (issue 15), on the medians, {name}:")
        for label, row, attr, erow, factor, lower in AIMS:
            rv = med([r[name][row] for r in rounds], attr)
            ev = med([r["etcd"][erow] for r in rounds], attr)
            ok = rv <= ev * factor if lower else rv >= ev * factor
            print(f"  {label:<34} {name} {rv:10.2f}  etcd {ev:10.2f}  ratio {_div(rv, ev):5.2f}  "
                  f"{'met' if ok else 'NOT met'}")
        p99 = med([r[name]["SET c1"] for r in rounds], "p99_ms")
        print(f"  {'SET c1 p99 <= 3 ms':<34} {name} {p99:10.2f}  "
              f"{'met' if p99 <= 3 else 'NOT met'}")
        kills = fails.get(name, [])
        got = sorted(v for v in kills if v is not None)
        if kills:
            missing = len(kills) - len(got)
            ok = bool(got) and percentile(got, 50) < 200 and got[-1] < 500 and not missing
            print(f"  {'failover p50 < 200 ms, max < 500':<34} {name} "
                  + (f"p50 {percentile(got, 50):.0f} ms max {got[-1]:.0f} ms over "
                     f"{len(got)} kills" if got else "no kill recovered")
                  + (f", {missing} never recovered" if missing else "")
                  + f"  {'met' if ok else 'NOT met'}  (etcd: not measured)")
    if len(systems) > 1:
        print("\nbaseline vs this tree (medians; ops/s ratio, p50 ratio):")
        for row in rows:
            a = [r["raftkv"][row] for r in rounds]
            b = [r[systems[1]][row] for r in rounds]
            print(f"  {row:<18} ops/s x{_div(med(a, 'rps'), med(b, 'rps')):5.2f}  "
                  f"p50 x{_div(med(a, 'p50_ms'), med(b, 'p50_ms')):5.2f}  "
                  f"(per round ops/s: {[round(f.rps) for f in a]} vs "
                  f"{[round(f.rps) for f in b]})")


# -- stability --------------------------------------------------------------------------


def stability(work: Path, seconds: float, snapshot_every: int,
              keyspace: int = 100_000, src: Path | None = None) -> dict[str, object]:
    """c50 SET + c50 GET on the leader for ``seconds`` (SET over ``keyspace`` random keys,
    snapshots every ``snapshot_every`` entries); a quarter of the way in, one follower is
    killed (-9) and, once the leader has compacted its log past what that follower holds,
    restarted, so it must catch up by snapshot while the load goes on. Reports leader
    changes seen by INFO polling (the restarted follower's own view is ignored while it is
    down and until it follows again), the snapshots taken, and whether the restarted
    follower installed a snapshot. Returns the figures ``stability_table`` compares;
    ``src``: run that RaftKV source tree (a baseline) instead of the installed one."""
    extra = ["--snapshot-entries", str(snapshot_every)]
    cluster = (LocalCluster(work, nodes=3, fsync="always", extra_args=extra) if src is None
               else BaselineCluster(work, src, nodes=3, fsync="always", extra_args=extra))
    try:
        cluster.start()
        leader, followers = roles(cluster)
        port = cluster.client_addr(leader)[1]
        watcher = Watcher(cluster)
        watcher.thread.start()
        cpu = CpuSampler(cluster)
        terms0 = raft_terms(cluster)
        t0 = time.monotonic()
        deadline = t0 + seconds
        done: dict[str, list[float]] = {"SET": [], "GET": []}

        def loop(test: str) -> None:  # short runs, so the load ends near the deadline
            extra = ["-r", str(keyspace)] if test == "SET" else []
            while time.monotonic() < deadline:
                run = redis_benchmark(port, test.lower(), 5_000, 50, extra=extra)
                row = run.rows.get(test)
                done[test].append(row.rps if row is not None else 0.0)

        threads = [threading.Thread(target=loop, args=(t,), daemon=True) for t in done]
        for t in threads:
            t.start()
        restart = restart_follower(cluster, watcher, leader, followers[0],
                                   t0 + seconds / 4, deadline)
        for t in threads:
            t.join()
        loaded = time.monotonic() - t0
        if restart["restarted_at"] is not None:  # let it finish catching up, if it has not
            wait_caught_up(cluster, leader, followers[0], time.monotonic() + 30)
        watcher.stop.set()
        watcher.thread.join()
        terms1 = raft_terms(cluster)
        snaps = {i: (cluster.info(i, 2.0) or {}).get("snapshot_index") for i in cluster.nodes}
        installs = count_lines(cluster, followers[0], "snapshot installed")
        print(f"\nstability: {loaded:.0f} s of SET c50 (-r {keyspace}) + GET c50 on leader "
              f"n{leader}, --snapshot-entries {snapshot_every}")
        for test, rps in done.items():
            print(f"  {test}: {len(rps)} runs of 5k, ops/s median "
                  f"{statistics.median(rps) if rps else 0:.0f}")
        print(f"  terms before {terms0} after {terms1}; snapshot_index {snaps}")
        print(f"  follower n{followers[0]}: {restart['note']}; snapshots installed since its "
              f"restart: {installs - restart['installs_before']}")
        print("  longest loop stall (INFO loop_lag_max_ms; the restarted follower's since "
              "its restart): " + ", ".join(f"n{i} {loop_lag_max(cluster, i)}"
                                           for i in cluster.nodes))
        print("  slowest INFO answer: "
              + ", ".join(f"n{i} {v * 1000:.0f} ms" for i, v in watcher.slowest.items()))
        for line in watcher.changes:
            print("  CHANGE " + line)
        print("  " + cpu.report())
        changed = bool(watcher.changes) or terms0 != terms1
        if changed:
            print(f"  node logs kept in {save_logs(cluster, 'stability')}")
        by_snapshot = installs > restart["installs_before"]
        print("  result: " + ("LEADER CHANGE under load" if changed else "no leader change")
              + ("; the restarted follower caught up by snapshot" if by_snapshot
                 else "; the restarted follower did NOT install a snapshot"))
        lags = {i: loop_lag_max(cluster, i) for i in cluster.nodes}
        return {"changes": len(watcher.changes) or int(terms0 != terms1),
                "leader_stall": lags[leader], "follower_stall": lags[followers[1]],
                "restarted_stall": lags[followers[0]],
                "leader_snapshots": count_lines(cluster, leader, "snapshot taken"),
                "set_rps": statistics.median(done["SET"]) if done["SET"] else 0.0,
                "by_snapshot": by_snapshot, "load": os.getloadavg()[0]}
    finally:
        cluster.close()


def stability_table(got: list[tuple[str, dict[str, object]]]) -> None:
    """One line per stability run, then per tree: leader changes and stall medians."""
    keys = ["changes", "leader_stall", "follower_stall", "restarted_stall",
            "leader_snapshots", "set_rps", "by_snapshot", "load"]
    print("\nstability runs (stalls: INFO loop_lag_max_ms)")
    print("  " + " ".join(f"{k:>15}" for k in ["tree", *keys]))
    for name, r in got:
        print("  " + " ".join(f"{str(v)[:15]:>15}" for v in [name, *(r[k] for k in keys)]))
    for name in dict(got):
        rs = [r for n, r in got if n == name]
        def ms(key: str, rs: list[dict[str, object]] = rs) -> str:
            vals = [float(str(r[key]).split()[0]) for r in rs if str(r[key])[0].isdigit()]
            if not vals:
                return "?"
            return f"{statistics.median(vals):.0f} ms {sorted(round(v) for v in vals)}"
        print(f"  {name}: runs {len(rs)}, with a leader change "
              f"{sum(1 for r in rs if r['changes'])}; median longest stall: leader "
              f"{ms('leader_stall')}, other follower {ms('follower_stall')}")


def loop_lag_max(cluster: LocalCluster, node: int) -> str:
    """The node's longest event-loop stall since it started (ms), or "?"."""
    try:
        stats = parse_info(call(cluster.nodes[node].client_addr, "INFO"))
        return f"{float(stats.get('loop_lag_max_ms', 0)):.0f} ms"
    except (OSError, ConnectionError, ValueError):
        return "?"


def count_lines(cluster: LocalCluster, node: int, text: str) -> int:
    path = cluster.nodes[node].log_path
    return path.read_text(errors="replace").count(text) if path.exists() else 0


def wait_caught_up(cluster: LocalCluster, leader: int, node: int, until: float) -> bool:
    """Poll until ``node`` follows ``leader`` and has applied the leader's commit index."""
    while time.monotonic() < until:
        lead, mine = cluster.info(leader, 2.0), cluster.info(node, 2.0)
        if (lead and mine and int(mine["leader_id"]) == leader
                and int(mine["last_applied"]) >= int(lead["commit_index"])):
            return True
        time.sleep(0.2)  # polling other processes: there is no event to wait on
    return False


def restart_follower(cluster: LocalCluster, watcher: Watcher, leader: int,
                     node: int, at: float, deadline: float,
                     margin: int = 2_000) -> dict[str, object]:
    """At ``at``, kill -9 follower ``node``; restart it once the leader's snapshot index is
    past the last entry it had (its log is compacted away: only a snapshot can bring it
    back). Returns what happened, for the report."""
    out: dict[str, object] = {"restarted_at": None, "installs_before": 0,
                              "note": "not restarted (the load ended first)"}
    time.sleep(max(0.0, at - time.monotonic()))  # a deadline in the load, not a sync
    info = cluster.info(node, 2.0) or {}
    # A few more entries may reach it between this INFO and the kill: ask for a margin.
    had = int(info.get("last_log_index", 0)) + margin
    watcher.away.add(node)
    watcher.seen.pop(node, None)
    cluster.kill(node)
    t_kill = time.monotonic()
    while time.monotonic() < deadline:
        snap = int((cluster.info(leader, 2.0) or {}).get("snapshot_index", 0))
        if snap > had:
            break
        time.sleep(0.2)  # polling the leader: there is no event to wait on
    else:
        cluster.start(node)
        watcher.away.discard(node)
        out["note"] = f"killed at index {had}; the leader never compacted past it"
        return out
    out["installs_before"] = count_lines(cluster, node, "snapshot installed")
    cluster.start(node)
    out["restarted_at"] = time.monotonic()
    caught = wait_caught_up(cluster, leader, node, max(deadline, time.monotonic() + 30))
    watcher.away.discard(node)
    out["note"] = (f"killed at index {had} {t_kill - watcher.t0:.1f} s in, restarted after "
                   f"the leader's snapshot passed it, "
                   + (f"caught up in {time.monotonic() - out['restarted_at']:.1f} s"  # type: ignore[operator]
                      if caught else "NOT caught up"))
    return out


# -- main -------------------------------------------------------------------------------


def run_rounds(n_rounds: int, kills: int, z: Sizes, work: Path, etcd: Etcd,
               clusters: dict[str, LocalCluster],
               rounds: list[dict[str, dict[str, Figure]]],
               fails: dict[str, list[float | None]]) -> None:
    """Issue 15's rows, the systems alternating, for ``n_rounds``; then the failover kills.
    Fills ``rounds`` and ``fails``."""
    eterms0 = etcd.raft_terms()
    rterms0 = {name: raft_terms(c) for name, c in clusters.items()}
    for n in range(n_rounds):
        got: dict[str, dict[str, Figure]] = {}
        steps: list[Callable[[], None]] = [
            lambda got=got: got.__setitem__("etcd", etcd_round(etcd, work, z))]
        steps += [lambda got=got, name=name, c=c: got.__setitem__(name, raft_round(c, z))
                  for name, c in clusters.items()]
        shift = n % len(steps)  # rotate the order: nobody always gets the quiet moment
        for step in steps[shift:] + steps[:shift]:
            step()
        rounds.append({"raftkv": got["raftkv"], **{k: v for k, v in got.items()
                                                   if k != "raftkv"}})
        print(f"\nround {n + 1} ({load_line()})")
        for row in got["raftkv"]:
            for name in [*clusters, "etcd"]:
                if row in got[name]:
                    print(f"  {row:<18} {name:<14} {fmt(got[name][row])}")
        print(flush=True)
    print(f"leader changes outside the kills: etcd terms {eterms0} -> {etcd.raft_terms()}, "
          + ", ".join(f"{name} terms {rterms0[name]} -> {raft_terms(c)}"
                      for name, c in clusters.items()))
    for n in range(n_rounds if kills else 0):
        for name, c in clusters.items():
            f = failovers(c, kills)
            fails.setdefault(name, []).extend(f)
            print("failover round {} {}: first OK after kill -9 leader: {}".format(
                n + 1, name, ", ".join("never" if v is None else f"{v:.0f} ms" for v in f)),
                flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    ap.add_argument("--failover-kills", type=int, default=None,
                    help="kill -9 leader rounds per round (default 7, quick 1); with "
                         "--rounds 0 --stability S, that many kills after the stability run")
    ap.add_argument("--stability", type=float, default=0.0,
                    help="seconds of c50 SET + c50 GET with snapshots every 10k (0: skip)")
    ap.add_argument("--stability-runs", type=int, default=0, metavar="N",
                    help="with --baseline: N stability runs of each tree, alternating")
    ap.add_argument("--scale", type=int, default=0, metavar="R",
                    help="R rounds of 3 against 5 nodes, SET c50 (bench_scale.py; 0: skip)")
    ap.add_argument("--baseline", default=None, metavar="REF",
                    help="also measure the RaftKV of git ref REF (e.g. main) in the same rounds")
    ap.add_argument("--dir", default=None, help="scratch base directory (a real disk)")
    args = ap.parse_args()
    z = (Sizes(seconds=3, n50=10_000, n1=500, nP=30_000) if args.quick
         else Sizes(seconds=8, n50=30_000, n1=2_000, nP=100_000))
    kills = args.failover_kills if args.failover_kills is not None else (
        (1 if args.quick else 7) if args.rounds else 0)
    ensure_packages()
    started = time.monotonic()
    print(load_line(), flush=True)
    rounds: list[dict[str, dict[str, Figure]]] = []
    fails: dict[str, list[float | None]] = {}
    with scratch_dir(args.dir, "bench-vs-etcd-") as work, contextlib.ExitStack() as stack:
        fsync_us = 1e6 / raw_fsync_rate(str(work), 2.0)
        print(f"disk: write+fsync of 100 B takes {fsync_us:.0f} us ({work})", flush=True)
        if args.rounds:  # --rounds 0: no idle clusters beside the stability run
            etcd = stack.enter_context(etcd_cluster(work / "etcd"))
            clusters = {"raftkv": stack.enter_context(raft_cluster(work / "raftkv",
                                                                   fsync="always"))}
            if args.baseline:
                clusters[f"raftkv@{args.baseline}"] = stack.enter_context(
                    baseline_cluster(work / "baseline", args.baseline))
            run_rounds(args.rounds, kills, z, work, etcd, clusters, rounds, fails)
        stack.close()
        if rounds:  # --rounds 0: only the stability run
            report(rounds, fails, fsync_us)
        if args.scale:
            print("\n5 nodes against 3 (bench_scale.py):")
            measure_scale(work / "scale", args.scale, z.n50)
        if args.stability and args.baseline and args.stability_runs:
            src = export_tree(args.baseline, work / "stability-src")
            got: list[tuple[str, dict[str, object]]] = []
            for n in range(args.stability_runs * 2):
                base = n % 4 in (1, 2)  # A B B A
                name = f"raftkv@{args.baseline}" if base else "raftkv"
                print(f"\n--- stability run {n + 1}: {name} ({load_line()})", flush=True)
                got.append((name, stability(work / f"stability-{n}", args.stability, 10_000,
                                            src=src if base else None)))
            stability_table(got)
        elif args.stability:
            stability(work / "stability", args.stability, 10_000)
        if not rounds and args.stability and kills:
            # --rounds 0 --stability S --failover-kills K: the failover rows in the same run
            # as the stability check (issue 15), on a fresh cluster.
            with raft_cluster(work / "failover", fsync="always") as c:
                f = failovers(c, kills)
            got = sorted(v for v in f if v is not None)
            print(f"\nfailover, {len(f)} kills of the leader: first OK after kill -9: "
                  + ", ".join("never" if v is None else f"{v:.0f} ms" for v in f))
            if got:
                print(f"  p50 {percentile(got, 50):.0f} ms, p90 {percentile(got, 90):.0f} ms, "
                      f"max {got[-1]:.0f} ms, never {len(f) - len(got)}  -> aim (p50 < 200, "
                      f"max < 500, every run) "
                      + ("met" if percentile(got, 50) < 200 and got[-1] < 500
                         and len(got) == len(f) else "NOT met"))
    print(f"\n{load_line()}; wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
