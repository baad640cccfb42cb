"""A leader sends snapshots to a restarted follower while its own forked child encodes, and
nodes are stopped with SIGTERM mid-snapshot (attack25). Not a test:

    python tests/attack/snapshot_send_while_forking.py [KEYS]

3-node LocalCluster (fork by default), --snapshot-entries 2000. Node 3 is killed; KEYS keys
are written (the leader compacts past node 3's log); node 3 restarts while the leader is
made to RAFT SNAPSHOT over and over (its child encoding as it sends). Then every node is
stopped with SIGTERM while a RAFT SNAPSHOT runs on it and restarted. Checks: replicas
identical (RAFT BACKUP digests), every key there, graceful stops exit 0 promptly, no
child left, descriptor counts of the leader before/after the repeated snapshots.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import trio
from proc_tree import children

from chaos.cluster import ONE_ENTRY_PER_WRITE, LocalCluster
from chaos.replicas import compare_replicas


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main(keys: int) -> int:
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCluster(Path(tmp), fsync="never",
                         extra_args=["--snapshot-entries", "2000", *ONE_ENTRY_PER_WRITE]) as c:
        leader = c.wait_for_leader()
        lagging = next(i for i in c.nodes if i != leader)
        c.kill(lagging)
        host, port = c.client_addr(leader)
        r = redis.Redis(host=host, port=port, socket_timeout=30, protocol=2)
        value = b"v" * 200
        for lo in range(0, keys, 500):
            with r.pipeline(transaction=False) as p:
                for i in range(lo, min(lo + 500, keys)):
                    p.set(f"key:{i}", value)
                p.execute()
        lpid = c.nodes[leader].proc.pid  # type: ignore[union-attr]
        fds_before = fds(lpid)
        stop = threading.Event()
        answers: list[object] = []

        def snapshots() -> None:
            s = redis.Redis(host=host, port=port, socket_timeout=30, protocol=2)
            n = 0
            while not stop.is_set():
                s.set(f"extra:{n}", "x")  # something new to snapshot each time
                n += 1
                try:
                    answers.append(s.execute_command("RAFT", "SNAPSHOT"))
                except redis.ResponseError as exc:
                    answers.append(f"error: {exc}")

        t = threading.Thread(target=snapshots)
        t.start()
        c.start(lagging)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = c.info(lagging)
            if info and int(info.get("commit_index", 0)) >= keys:
                break
            time.sleep(0.2)
        time.sleep(2)
        stop.set()
        t.join()
        fds_after = fds(lpid)
        print(f"leader {leader}: {len(answers)} RAFT SNAPSHOTs while node {lagging} caught "
              f"up; errors {[a for a in answers if not isinstance(a, int)][:3]}; "
              f"leader fds {fds_before} -> {fds_after}")
        log3 = c.nodes[lagging].log_path.read_text(errors="replace")
        print(f"node {lagging}: 'snapshot installed' x{log3.count('snapshot installed')}")
        # SIGTERM each node mid-snapshot.
        for i in list(c.nodes):
            h, p_ = c.client_addr(i)
            rr = redis.Redis(host=h, port=p_, socket_timeout=30, protocol=2)
            pid = c.nodes[i].proc.pid  # type: ignore[union-attr]
            th = threading.Thread(target=lambda rr=rr: answers.append(
                _try(lambda: rr.execute_command("RAFT", "SNAPSHOT"))))
            th.start()
            seen = False
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (seen := bool(children(pid))):
                time.sleep(0.001)
            t0 = time.monotonic()
            code = c.stop(i)
            took = time.monotonic() - t0
            th.join()
            left = children(pid)
            print(f"node {i}: SIGTERM with a child {'seen' if seen else 'NOT seen'}: "
                  f"exit {code} in {took:.2f}s, RAFT SNAPSHOT -> {answers[-1]!r}")
            if code != 0 or took > 10 or left:
                problems.append(f"node {i} stop: exit {code} in {took:.1f}s, left {left}")
            c.start(i)
            c.wait_for_leader(timeout=30)
        verdict = trio.run(compare_replicas, {i: c.client_addr(i) for i in c.nodes}, 60.0)
        print("replicas:", verdict.ok, verdict.summary)
        leader = c.wait_for_leader()
        host, port = c.client_addr(leader)
        r = redis.Redis(host=host, port=port, socket_timeout=30, protocol=2)
        missing = sum(1 for lo in range(0, keys, 1000)
                      for v in r.mget([f"key:{i}" for i in range(lo, min(lo + 1000, keys))])
                      if v != value)
        print("keys missing or wrong:", missing, "crashed:", c.crashed())
        if not verdict.ok or missing or c.crashed():
            problems.append("state")
    print("OK" if not problems else f"FAILED {problems}")
    return 1 if problems else 0


def _try(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except (redis.ResponseError, redis.ConnectionError) as exc:
        return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000))
