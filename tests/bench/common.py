"""Shared pieces of the cluster benchmarks: scratch dirs on a real disk, a redis-server
reference, redis-benchmark runs, a blocking RESP connection, percentiles.

The benchmarks compare RaftKV with ``redis-server --appendfsync always`` on the same disk,
so every scratch directory must be on a real file system: fsync on tmpfs is free and
would flatter the reference (and RaftKV) by orders of magnitude.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import redis

from chaos.cluster import LocalCluster, NodeProcess, free_ports
from wire.reply import ErrorReply
from wire.resp import encode_command
from wire.resp_reply import NEED_MORE, ReplyParser

HOST = "127.0.0.1"


# -- scratch space ----------------------------------------------------------------------


def fs_type(path: str) -> str:
    """File system type of the mount holding ``path`` (from /proc/mounts)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            _, mnt, fstype, *_ = line.split()
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, kind = mnt, fstype
    return kind


def default_base() -> str:
    """$RAFTKV_BENCH_DIR, else /work/tmp when it exists, else the current directory."""
    base = os.environ.get("RAFTKV_BENCH_DIR") or ("/work/tmp" if os.path.isdir("/work/tmp")
                                                   else os.getcwd())
    return base


@contextlib.contextmanager
def scratch_dir(base: str | None = None, prefix: str = "bench-") -> Iterator[Path]:
    """A fresh directory under ``base``, removed afterwards; warns when it is on tmpfs."""
    base = base or default_base()
    os.makedirs(base, exist_ok=True)
    kind = fs_type(base)
    if kind in ("tmpfs", "ramfs"):
        print(f"WARNING: {base} is on {kind}: fsync is free there, figures mean little",
              file=sys.stderr)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- processes --------------------------------------------------------------------------


def kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL the process group ``proc`` leads (it was started with a new session)."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextlib.contextmanager
def raft_cluster(workdir: Path, nodes: int = 3, fsync: str = "always",
                 extra_args: Sequence[str] = ()) -> Iterator[LocalCluster]:
    """A started LocalCluster with an agreed leader; every node's group killed on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(workdir, nodes=nodes, fsync=fsync, extra_args=list(extra_args))
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        yield cluster
    finally:
        cluster.close()  # kills and reaps every node's process group


def save_logs(cluster: LocalCluster, tag: str) -> Path:
    """Copy the node logs out of the scratch dir (removed at exit), for a post-mortem."""
    dest = Path(default_base()) / f"bench-logs-{tag}-{time.strftime('%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=True)
    for node in cluster.nodes.values():
        with contextlib.suppress(OSError):
            shutil.copy(node.log_path, dest / node.log_path.name)
    return dest


def revive_dead(cluster: LocalCluster) -> list[str]:
    """Restart every node that exited on its own (not one the bench killed); describe each
    death (exit code, last log line)."""
    deaths = []
    for i, code in cluster.crashed().items():
        node = cluster.nodes[i]
        last = ""
        with contextlib.suppress(OSError):
            lines = node.log_path.read_text(errors="replace").splitlines()
            useful = [ln.strip(" |+-") for ln in lines if ln.strip(" |+-")]
            last = useful[-1] if useful else ""
        deaths.append(f"NODE n{i} DIED (exit {code}): {last[:200]}")
        cluster.start(i)
    if deaths:
        cluster.wait_for_leader(timeout=30)
    return deaths


def wait_for_ping(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with RespConn(host, port, timeout=1.0) as conn:
                if conn.call("PING") is not None:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)  # polling another process's start: there is no event to wait on


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    """``redis-server`` with appendfsync always on a free port in ``workdir``; yields the port."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found (apt-get install -y redis-server)")
    (port,) = free_ports(1)
    rdir = workdir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    log = open(rdir / "redis.log", "wb")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", HOST, "--appendonly", "yes",
         "--appendfsync", "always", "--save", "", "--dir", str(rdir), "--daemonize", "no",
         "--protected-mode", "no"],
        stdout=log, stderr=log, start_new_session=True)
    log.close()
    try:
        wait_for_ping(HOST, port)
        yield port
    finally:
        kill_group(proc)


# -- a blocking RESP connection ---------------------------------------------------------


class RespConn:
    """One TCP connection speaking RESP2; ``call`` sends a command and waits for its reply."""

    def __init__(self, host: str, port: int, timeout: float | None = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = ReplyParser()

    def call(self, *args: str | bytes | int) -> object:
        self.sock.sendall(encode_command(*args))
        while True:
            reply = self.parser.next_reply()
            if reply is not NEED_MORE:
                return reply
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by the server")
            self.parser.feed(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RespConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_ok(reply: object) -> bool:
    return not isinstance(reply, ErrorReply) and reply is not None


# -- redis-benchmark --------------------------------------------------------------------


@attrs.frozen
class BenchRow:
    test: str
    rps: float
    avg_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float


@attrs.frozen
class BenchRun:
    rows: dict[str, BenchRow]
    alerts: list[str]  # output lines mentioning WARNING or ERROR
    seconds: float
    returncode: int


def redis_benchmark(port: int, tests: str, requests: int, clients: int, pipeline: int = 1,
                    host: str = HOST, extra: Sequence[str] = (),
                    timeout: float | None = None) -> BenchRun:
    """Run ``redis-benchmark --csv`` and parse its rows (redis-benchmark 7's CSV columns).

    redis-benchmark retries a dead server forever, hence ``timeout`` (killed after it; by
    default far above what the slowest RaftKV run takes: ~20 SET/s per client)."""
    if timeout is None:
        timeout = 120 + requests * len(tests.split(",")) / (20 * min(clients * pipeline, 50))
    cmd = ["redis-benchmark", "-h", host, "-p", str(port), "-t", tests, "-n", str(requests),
           "-c", str(clients), "-P", str(pipeline), "--csv", *extra]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        err += f"\nERROR: redis-benchmark killed after {timeout:g} s"
        proc = subprocess.CompletedProcess(cmd, -9, out, err)
    seconds = time.perf_counter() - start
    rows: dict[str, BenchRow] = {}
    alerts = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines()
              if "WARN" in line.upper() or "ERR" in line.upper()]
    for rec in csv.DictReader(io.StringIO(proc.stdout)):
        try:
            rows[rec["test"]] = BenchRow(
                rec["test"], float(rec["rps"]), float(rec["avg_latency_ms"]),
                float(rec["p50_latency_ms"]), float(rec["p99_latency_ms"]),
                float(rec["max_latency_ms"]))
        except (KeyError, TypeError, ValueError):
            alerts.append(f"unparsed CSV row: {rec}")
    if proc.returncode:
        alerts.append(f"redis-benchmark exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return BenchRun(rows, alerts, seconds, proc.returncode)


# -- numbers ----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def roles(cluster: LocalCluster) -> tuple[int, list[int]]:
    """(leader id, follower ids) once the live nodes agree on a leader."""
    leader = cluster.wait_for_leader(timeout=30)
    return leader, [i for i, n in cluster.nodes.items() if i != leader and n.alive]


# -- the machine ------------------------------------------------------------------------


def load_line() -> str:
    """Load average and cores: on a shared machine other work skews every figure here."""
    one, five, _ = os.getloadavg()
    return f"machine: {os.cpu_count()} cores, load average {one:.1f} (1 min) {five:.1f} (5 min)"


def _schedstat(pid: int) -> tuple[int, int] | None:
    """(ns on CPU, ns runnable but waiting for a CPU), summed over the process's threads;
    None once the process is gone."""
    run = wait = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        with contextlib.suppress(OSError, ValueError), \
                open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            a, b, _ = f.read().split()
            run, wait = run + int(a), wait + int(b)
    return run, wait


class CpuSampler:
    """On-CPU and run-queue-wait time of the cluster's node processes over an interval.

    A node that waits for a CPU longer than it runs is starved by other work on the
    machine: its latencies then measure the scheduler, not RaftKV."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.procs = {i: n.proc for i, n in cluster.nodes.items() if n.proc and n.alive}
        self.start = {i: _schedstat(p.pid) for i, p in self.procs.items()}
        self.t0 = time.monotonic()

    def report(self) -> str:
        el = time.monotonic() - self.t0
        parts = []
        for i, proc in self.procs.items():
            now, then = _schedstat(proc.pid), self.start[i]
            if now is None or then is None or proc.poll() is not None:
                parts.append(f"n{i} exited during the interval")
                continue
            (run, wait), (r0, w0) = now, then
            parts.append(f"n{i} on-CPU {(run - r0) / 1e9 / el:.0%} "
                         f"waiting-for-CPU {(wait - w0) / 1e9 / el:.0%}")
        return "node CPU (summed over threads): " + "; ".join(parts)


# -- shared by bench_join and bench_snapshot ------------------------------------------

def conn(c: LocalCluster, node_id: int) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, socket_timeout=60, protocol=2)


def load_keys(r: redis.Redis, keys: int, value: bytes) -> str:
    """SET ``key:00000000`` .. in pipelined batches of 1000; print the rate; the last key."""
    started = time.monotonic()
    for lo in range(0, keys, 1000):
        with r.pipeline(transaction=False) as pipe:
            for k in range(lo, min(lo + 1000, keys)):
                pipe.set(f"key:{k:08d}", value)
            pipe.execute()
    took = time.monotonic() - started
    print(f"  wrote {keys} keys of {len(value)} B in {took:.1f} s ({keys / took:.0f}/s)")
    return f"key:{keys - 1:08d}"


def wait(predicate, timeout: float = 300.0) -> float:
    """Seconds until ``predicate()`` (polled: another process has no event to wait on)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError("gave up waiting")
        time.sleep(0.005)
    return time.monotonic() - start


def field(log: Path, line: str, name: str) -> str:
    for row in reversed(log.read_text(errors="replace").splitlines()):
        if line in row and (m := re.search(rf"\b{name}=(\S+)", row)):
            return m.group(1)
    return "?"


def serves(c: LocalCluster, node_id: int, key: str, value: bytes) -> bool:
    try:
        return conn(c, node_id).get(key) == value
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return False


# -- statistics ----------------------------------------------------------------------


def paired_ratios(named: list[tuple[str, float]]) -> list[float]:
    """with/without throughput of each adjacent pair (runs 0-1, 2-3, ...): the two runs of
    a pair are seconds apart, so the machine's drifting load cancels out of their ratio."""
    out = []
    for i in range(0, len(named) - 1, 2):
        pair = dict(named[i : i + 2])
        if pair.get("with") and pair.get("without"):
            out.append(pair["with"] / pair["without"])
    return out


def median_ci(values: list[float], draws: int = 2000) -> tuple[float, float, float]:
    """The median and a bootstrap 95% interval of it (seeded: the same runs, the same CI)."""
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(draws)
    )
    return statistics.median(values), medians[int(0.025 * draws)], medians[int(0.975 * draws)]


class BaselineCluster(LocalCluster):
    """A LocalCluster whose nodes run the RaftKV source tree ``src`` (not the installed one):
    PYTHONPATH first, and ``-P`` so the current directory does not shadow it."""

    def __init__(self, workdir: Path, src: Path, **kw: object) -> None:
        super().__init__(workdir, **kw)  # type: ignore[arg-type]
        self.src = src

    def command(self, node: NodeProcess) -> list[str]:
        python, *rest = super().command(node)
        path = ":".join(filter(None, [str(self.src), os.environ.get("PYTHONPATH", "")]))
        return ["env", f"PYTHONPATH={path}", python, "-P", *rest]


def export_tree(ref: str, dest: Path) -> Path:
    """The raftkv and wire packages of git ref ``ref`` unpacked under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[2]
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "raftkv", "wire"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


@contextlib.contextmanager
def baseline_cluster(workdir: Path, ref: str) -> Iterator[LocalCluster]:
    cluster = BaselineCluster(workdir / "cluster", export_tree(ref, workdir / "src"),
                              nodes=3, fsync="always")
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        yield cluster
    finally:
        cluster.close()
