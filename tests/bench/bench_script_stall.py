"""How long one script holds every replica's event loop, on a 3-node cluster, before and
after the script budget recorded in the entry (issue 12, raftkv/kv/features.py).

Run: .venv/bin/python tests/bench/bench_script_stall.py [--baseline main] [--keys 100000]
     [--rounds 3] [--base-port 7800]

Cases, each on the leader: a budget-spending loop (fails at the budget: 10M units on a
tree without the budget form, --script-budget 1M by default with it), a loop of table
constructors that allocate 4 KiB each (attack16; same budget), and a script that
builds a table of ``--keys`` key names and DELs them all (``attack_script_keys.py``'s, the
keys loaded first). Per case and node: INFO's ``loop_lag_max_ms`` after CONFIG RESETSTAT
(the loop-lag monitor, raftkv/server/loop_lag.py: how late a 10 ms sleep woke), and the
node's CPU (schedstat, all threads) from before the command until every node applied it.
Trees alternate A B B A with ``--baseline``; a tree with the gate waits for INFO's
``cluster_level`` to reach 1 before measuring.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import redis
from common import BaselineCluster, _schedstat, export_tree, load_line

from chaos.cluster import LocalCluster

SPEND = "local x = 0 for i = 1, 100000000 do x = x + 1 end return x"
NILS = ", ".join(["nil"] * 250)
CTOR = ("local x = 0 for i = 1, 100000000 do local t = {" + NILS + ", i} x = x + 1 end "
        "return x")  # attack16: ~12 instructions allocate 4 KiB
DEL = ("local t = {} for i = 1, tonumber(ARGV[1]) do t[i] = 'key:' .. i end "
       "return redis.call('DEL', unpack(t))")


def _conn(c: LocalCluster, i: int) -> redis.Redis:
    host, port = c.client_addr(i)
    return redis.Redis(host=host, port=port, socket_timeout=60, protocol=2)


def _applied_everywhere(c: LocalCluster, conns: dict[int, redis.Redis], leader: int) -> None:
    target = int(conns[leader].info("raft")["commit_index"])
    deadline = time.monotonic() + 60
    while any(int(r.info("raft")["last_applied"]) < target for r in conns.values()):
        if time.monotonic() > deadline:
            raise TimeoutError("nodes did not apply")
        time.sleep(0.01)  # another process: no event to wait on


def _load(r: redis.Redis, keys: int) -> None:
    for lo in range(1, keys + 1, 1000):
        r.mset({f"key:{i}": "v" for i in range(lo, min(lo + 1000, keys + 1))})


def measure(c: LocalCluster, keys: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    leader = c.wait_for_leader(timeout=30)
    conns = {i: _conn(c, i) for i in c.nodes}
    info = conns[leader].info("raft")
    if "cluster_level" in info:
        deadline = time.monotonic() + 30
        while int(conns[leader].info("raft")["cluster_level"]) < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the gate never opened")
            time.sleep(0.05)
    out: dict[str, list[tuple[float, float]]] = {"spend loop": [], "constructors": [],
                                                   f"DEL {keys} keys": []}
    for _ in range(rounds):
        for name in out:
            if name.startswith("DEL"):
                _load(conns[leader], keys)
            _applied_everywhere(c, conns, leader)
            time.sleep(0.1)
            for r in conns.values():
                r.config_resetstat()
            before = {i: _schedstat(n.proc.pid) for i, n in c.nodes.items() if n.proc}
            try:
                if name.startswith("DEL"):
                    reply = conns[leader].eval(DEL, 0, keys)
                elif name == "constructors":
                    reply = conns[leader].eval(CTOR, 0)
                else:
                    reply = conns[leader].eval(SPEND, 0)
            except redis.ResponseError as exc:
                reply = f"-{exc}"
            _applied_everywhere(c, conns, leader)
            time.sleep(0.05)  # (the monitor records a lag when its sleep returns)
            after = {i: _schedstat(n.proc.pid) for i, n in c.nodes.items() if n.proc}
            for i, r in conns.items():
                lag = float(r.info()["loop_lag_max_ms"])
                cpu = (after[i][0] - before[i][0]) / 1e6  # type: ignore[index]
                out[name].append((lag, cpu))
            print(f"    {name}: {str(reply)[:70]}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base-port", type=int, default=7800)
    ap.add_argument("--baseline", default="")
    a = ap.parse_args()
    print(load_line())
    ports = [(a.base_port + 2 * i, a.base_port + 2 * i + 1) for i in range(3)]
    results: dict[str, list[dict[str, list[tuple[float, float]]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-script-stall-") as tmp:
        d = Path(tmp)
        trees = [("this tree", None)]
        if a.baseline:
            trees = [(a.baseline, a.baseline), ("this tree", None), ("this tree", None),
                     (a.baseline, a.baseline)]
            src = export_tree(a.baseline, d / "src")
        for n, (name, ref) in enumerate(trees):
            print(f"[{name}]", flush=True)
            if ref is None:
                c: LocalCluster = LocalCluster(d / f"c{n}", ports=ports, fsync="never")
            else:
                c = BaselineCluster(d / f"c{n}", src, ports=ports, fsync="never")
            try:
                c.start()
                results.setdefault(name, []).append(measure(c, a.keys, a.rounds))
            finally:
                c.close()
    if a.baseline:  # clusters 0 and 3 ran the baseline, 1 and 2 this tree: pairs (0,1) (3,2)
        base, this = results[a.baseline], results["this tree"]
        for case in base[0]:
            for what, k in (("lag", 0), ("CPU", 1)):
                ratios = [statistics.median(s[k] for s in t[case])
                          / statistics.median(s[k] for s in b[case])
                          for b, t in ((base[0], this[0]), (base[1], this[1]))]
                print(f"  paired ratio this/baseline {case:16s} {what}: "
                      + ", ".join(f"{r:.3f}" for r in ratios))
    for name, runs in results.items():
        print(f"[{name}] worst loop lag of any node (ms) / CPU per node (ms), median of "
              f"{len(runs)} cluster(s) x {a.rounds} rounds x 3 nodes")
        for case in runs[0]:
            samples = [s for run in runs for s in run[case]]
            lags = sorted(s[0] for s in samples)
            cpus = sorted(s[1] for s in samples)
            print(f"  {case:16s} lag median {statistics.median(lags):7.1f}  max {lags[-1]:7.1f}"
                  f"   CPU median {statistics.median(cpus):7.1f}  max {cpus[-1]:7.1f}")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
