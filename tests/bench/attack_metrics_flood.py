"""``/livez`` under a flood of half-open connections to the ops HTTP port (issue 12).

Run: .venv/bin/python tests/bench/attack_metrics_flood.py [--seconds 15] [--holders 500]
[--mode half,silent,noread] [--baseline REF] [--rounds N] [--base-port 7250]

A 3-node cluster with ``--metrics-addr`` on the leader. For each mode, ``--holders``
connections to the metrics port are opened once and held (``-hold`` modes), or opened
again as fast as the node closes them by two processes (the others; processes, not
threads: the probe and the client below must not wait for the flood's GIL, or the faster
the node refuses the flood, the slower they look): ``half`` sends half
a request head and never finishes it, ``silent`` sends nothing, ``noread`` sends
``GET /metrics`` and never reads the answer (4 KiB receive buffer). Meanwhile a probe
opens a new connection for ``GET /livez`` every 100 ms, and another client sends
``SET``/``GET`` to the client port. Printed per mode: the probes' status codes, median
and slowest answer, the client's slowest round trip, the node's descriptor count at its
peak, the leader's CPU (all threads) per second of the mode, and whether the leader and
its term stayed. With ``--baseline`` and ``--rounds N``, the trees alternate (A B, B A,
...), each round on a fresh cluster.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from common import BaselineCluster, _schedstat, export_tree, load_line

from chaos.cluster import LocalCluster
from raftkv.probe import call, parse_info

HEADS = {"half": b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ",
         "silent": b"",
         "noread": b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
         # complete probe heads: answered in the probe slots, outside the admission rate
         "readyz": b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
         "livez": b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"}


def livez(addr: tuple[str, int]) -> tuple[str, float]:
    t0 = time.monotonic()
    try:
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        status = data.split(b"\r\n", 1)[0].decode(errors="replace")[9:12] or "closed"
    except OSError as exc:
        status = type(exc).__name__
    return status, time.monotonic() - t0


def flood(addr: tuple[str, int], head: bytes, holders: int, stop: Any,
          opened: Any, reconnect: bool = True, rate: float = 0.0) -> None:
    """Open connections (in a process of its own) until ``stop``; ``opened`` counts them;
    at most ``rate`` a second if given (0: as fast as they go)."""
    held: collections.deque[socket.socket] = collections.deque()
    n = 0
    began = time.monotonic()
    while not stop.is_set() and (reconnect or n < holders):
        if rate and n > rate * (time.monotonic() - began):
            time.sleep(1 / rate)
            continue
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(2)
            s.connect(addr)
            if head:
                s.sendall(head)
            s.setblocking(False)
            held.append(s)
            n += 1
            opened.value = n
        except OSError:
            time.sleep(0.01)  # (the port refused or the backlog is full: try again)
        while len(held) >= holders:  # keep --holders open: drop the oldest
            held.popleft().close()
    stop.wait()
    for s in held:
        s.close()


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def node_info(c: LocalCluster, node_id: int) -> dict[str, str]:
    try:
        return parse_info(call(c.nodes[node_id].client_addr, "INFO", "everything", timeout=5))
    except (OSError, ConnectionError, redis.RedisError):
        return {}


def run(c: LocalCluster, metrics_port: int, modes: list[str], holders: int,
        seconds: float, rate: float = 0.0) -> list[dict[str, Any]]:
    leader = c.wait_for_leader(timeout=30)
    host, port = c.client_addr(leader)
    addr = ("127.0.0.1", metrics_port)
    pid = c.nodes[leader].proc.pid  # type: ignore[union-attr]
    r = redis.Redis(host=host, port=port, socket_timeout=10)
    results = []
    for mode in modes:
        leader = c.wait_for_leader(timeout=30)
        term = int(c.info(leader)["term"])
        for node_id in c.nodes:
            call(c.nodes[node_id].client_addr, "CONFIG", "RESETSTAT", timeout=5)
        pids = {i: n.proc.pid for i, n in c.nodes.items()}  # type: ignore[union-attr]
        sched0 = {i: _schedstat(p) for i, p in pids.items()}
        ctx = multiprocessing.get_context("fork")
        stop = ctx.Event()
        kind, _, hold = mode.partition("-")
        share = holders if hold else holders // 2
        counts = [ctx.Value("q", 0, lock=False) for _ in range(2 if not hold else 1)]
        floods = [ctx.Process(target=flood, args=(addr, HEADS[kind], share, stop, count,
                                                  not hold, rate)) for count in counts]
        for t in floods:
            t.start()
        statuses: collections.Counter[str] = collections.Counter()
        slowest = client_slowest = 0.0
        peak_fds = 0
        n = 0
        took_all: list[float] = []
        cpu0 = _schedstat(pid)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            status, took = livez(addr)
            statuses[status] += 1
            slowest = max(slowest, took)
            took_all.append(took)
            t0 = time.monotonic()
            try:
                r.set(b"probe", b"%d" % n)
                assert r.get(b"probe") == b"%d" % n
            except (redis.RedisError, AssertionError):
                statuses["client-failed"] += 1
            client_slowest = max(client_slowest, time.monotonic() - t0)
            peak_fds = max(peak_fds, fds(pid))
            n += 1
            time.sleep(0.1)  # the probe's period: nothing to wait on
        cpu1 = _schedstat(pid)
        cpu = (cpu1[0] - cpu0[0]) / 1e9 / seconds if cpu0 and cpu1 else float("nan")
        sched1 = {i: _schedstat(p) for i, p in pids.items()}
        flood_cpu = sum((_schedstat(t.pid) or (0, 0))[0] for t in floods) / 1e9 / seconds
        stop.set()
        for t in floods:
            t.join()
        after = c.info(leader) or {}
        median = sorted(took_all)[len(took_all) // 2] if took_all else float("nan")
        opened = sum(count.value for count in counts)
        infos = {i: node_info(c, i) for i in c.nodes}
        per_node = {
            i: ("L" if i == leader else "F")
            + f" cpu {(sched1[i][0] - sched0[i][0]) / 1e9 / seconds:.2f}"
            f" wait {(sched1[i][1] - sched0[i][1]) / 1e9 / seconds:.2f}"
            f" lag {float(infos[i].get('loop_lag_max_ms', 'nan')):.0f}ms"
            for i in c.nodes if sched0[i] and sched1[i] and infos[i]}
        changes = int(after.get("term", term)) - term
        print(f"  {mode:7s}: {opened:,} flood connections; /livez {dict(statuses)}, "
              f"median {median * 1000:.0f} ms, slowest {slowest * 1000:.0f} ms; leader CPU "
              f"{cpu:.2f} s/s; client SET+GET slowest "
              f"{client_slowest * 1000:.0f} ms; node fds peak {peak_fds}; leader "
              f"{after.get('role')} term {after.get('term')} (was term {term}); flood CPU "
              f"{flood_cpu:.2f} s/s; per node (CPU and run-queue wait, s/s; loop lag max) "
              f"{per_node}", flush=True)
        results.append({"mode": mode, "median": median, "cpu": cpu, "opened": opened,
                        "term_changes": changes, "failed": sum(
                            v for k, v in statuses.items() if k != "200")})
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--holders", type=int, default=500)
    ap.add_argument("--mode", default="half-hold,silent-hold,noread-hold,half,silent,noread")
    ap.add_argument("--baseline", default="")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--base-port", type=int, default=7250)
    ap.add_argument("--flood-rate", type=float, default=0.0,
                    help="connections a second each flood process opens at most (0: all)")
    a = ap.parse_args()
    print(load_line())
    ports = [(a.base_port + 2 * i, a.base_port + 2 * i + 1) for i in range(3)]
    metrics_port = a.base_port + 10
    node_args = {i: ["--metrics-addr", f"127.0.0.1:{metrics_port + i}"] for i in (1, 2, 3)}
    with tempfile.TemporaryDirectory(prefix="bench-httpflood-") as tmp:
        d = Path(tmp)
        trees = [("this tree", None)] + ([(a.baseline, a.baseline)] if a.baseline else [])
        src = export_tree(a.baseline, d / "src") if a.baseline else None
        table: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for rnd in range(a.rounds):
            for name, ref in (trees if rnd % 2 == 0 else trees[::-1]):
                print(f"[round {rnd + 1}: {name}] {load_line()}", flush=True)
                work = d / f"r{rnd}-{'base' if ref else 'this'}"
                if ref is None:
                    c: LocalCluster = LocalCluster(work, ports=ports, fsync="never",
                                                   node_args=node_args)
                else:
                    assert src is not None
                    c = BaselineCluster(work, src, ports=ports, fsync="never",
                                        node_args=node_args)
                try:
                    c.start()
                    leader = c.wait_for_leader(timeout=30)
                    for res in run(c, metrics_port + leader, a.mode.split(","), a.holders,
                                   a.seconds, a.flood_rate):
                        table.setdefault((name, res["mode"]), []).append(res)
                finally:
                    c.close()
        print("summary (medians over rounds; leader changes summed):")
        for (name, mode), rows in sorted(table.items()):
            med = sorted(x["median"] for x in rows)[len(rows) // 2]
            cpu = sorted(x["cpu"] for x in rows)[len(rows) // 2]
            lost = sum(1 for x in rows if x["term_changes"])
            print(f"  [{name}] {mode}: {len(rows)} runs, probe median {med * 1000:.0f} ms, "
                  f"failed probes {sum(x['failed'] for x in rows)}, leader CPU {cpu:.2f} s/s, "
                  f"runs with a term change {lost}/{len(rows)}")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
