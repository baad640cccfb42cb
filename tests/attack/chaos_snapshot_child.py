"""Kill -9 nodes and their snapshot children while they snapshot, under writes (attack25).
Not a test:

    [A25_TLS=1] [A25_FSYNC=always] python tests/attack/chaos_snapshot_child.py [SECONDS] [SEED]

A 3-node LocalCluster (`raftkv serve`: snapshots in a forked child by default), fsync never
(a killed process loses nothing the kernel has), --snapshot-entries 2000, one entry per
write. Writers INCR counters (acknowledged increments counted) and SET keys of 200 bytes.
A nemesis waits until some node has a snapshot child, then one of: kill -9 the node
(restarted a second later), kill -9 the child, SIGSTOP the child for 1-3 s, SIGSTOP it and
kill -9 the node (restarted); every node is restarted if down at the end. Then: no node
exited on its own, every counter holds at least its acknowledged increments, the replicas
are identical (RAFT BACKUP digests, chaos.replicas), and no process outlived its node.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import redis
import trio
from proc_tree import children

from chaos.cluster import ONE_ENTRY_PER_WRITE, LocalCluster
from chaos.replicas import compare_replicas
from raftkv import certs


def ours(workdir: Path) -> list[tuple[int, int, str]]:
    """(pid, ppid, state) of every process whose command line names ``workdir``."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if str(workdir).encode() in cmd:
            out.append((int(pid), int(stat[1]), stat[0]))
    return out


def writer(c: LocalCluster, wid: int, stop: threading.Event, acked: Counter[str],
           lock: threading.Lock) -> None:
    rng = random.Random(wid)
    r: redis.Redis | None = None
    node = 1
    while not stop.is_set():
        try:
            if r is None:
                host, port = c.client_addr(node)
                r = redis.Redis(host=host, port=port, socket_timeout=5, protocol=2)
            if rng.random() < 0.5:
                key = f"c:{wid}:{rng.randrange(4)}"
                r.incr(key)
                with lock:
                    acked[key] += 1
            else:
                r.set(f"k:{rng.randrange(20_000)}", os.urandom(100).hex())
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            r = None
            node = node % len(c.nodes) + 1
            time.sleep(0.05)


def main(seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tls = None
        if os.environ.get("A25_TLS"):  # peer links over mutual TLS (raftkv.certs)
            tls = work / "tls"
            certs.create(tls)
        with LocalCluster(work / "c", fsync=os.environ.get("A25_FSYNC", "never"), peer_tls=tls,
                          extra_args=["--snapshot-entries", "2000", *ONE_ENTRY_PER_WRITE]) as c:
            c.wait_for_leader()
            stop = threading.Event()
            acked: Counter[str] = Counter()
            lock = threading.Lock()
            writers = [threading.Thread(target=writer, args=(c, w, stop, acked, lock))
                       for w in range(4)]
            for t in writers:
                t.start()
            actions: Counter[str] = Counter()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                target = rng.choice([i for i, n in c.nodes.items() if n.alive])
                pid = c.nodes[target].proc.pid  # type: ignore[union-attr]
                deadline = time.monotonic() + 10
                kids: list[int] = []
                while time.monotonic() < deadline and not kids:
                    kids = children(pid)
                    time.sleep(0.002)
                if not kids:
                    actions["no child seen in 10 s"] += 1
                    continue
                child = kids[0]
                time.sleep(rng.random() * 0.2)  # somewhere in the encoding or the stream
                action = rng.choice(["kill node", "kill child", "stop child",
                                     "stop child, kill node"])
                if child not in children(pid):
                    actions["child done before the action"] += 1
                    continue
                actions[action] += 1
                try:
                    if action == "kill child":
                        os.kill(child, signal.SIGKILL)
                    elif action.startswith("stop child"):
                        os.kill(child, signal.SIGSTOP)
                        if action == "stop child":
                            time.sleep(rng.uniform(1, 3))
                            os.kill(child, signal.SIGCONT)
                except ProcessLookupError:
                    actions["child gone before the signal"] += 1
                if "kill node" in action:
                    # The node's pid alone (`kill -9 PID`), not its process group as
                    # LocalCluster.kill does: the child is left to itself.
                    c.nodes[target].expect_exit = True
                    os.kill(pid, signal.SIGKILL)
                    c.nodes[target].proc.wait(timeout=15)  # type: ignore[union-attr]
                    time.sleep(1)
                    left = [p for p in ours(work) if p[1] == 1 or p[0] == child]
                    if left:
                        actions[f"left after its node's kill: {left}"] += 1
                    c.start(target)
                time.sleep(rng.uniform(0.5, 2))
            stop.set()
            for t in writers:
                t.join()
            for i, n in c.nodes.items():
                if not n.alive:
                    c.start(i)
            crashed = c.crashed()
            c.wait_for_leader(timeout=30)
            leader = c.wait_for_leader()
            host, port = c.client_addr(leader)
            r = redis.Redis(host=host, port=port, socket_timeout=10, protocol=2)
            lost = {k: (n, int(r.get(k) or 0)) for k, n in acked.items()
                    if int(r.get(k) or 0) < n}
            verdict = trio.run(compare_replicas,
                               {i: c.client_addr(i) for i in c.nodes}, 60.0)
            infos = {i: c.info(i) for i in c.nodes}
            stray = [p for p in ours(work)
                     if p[0] not in {n.proc.pid for n in c.nodes.values() if n.proc}
                     and p[1] not in {n.proc.pid for n in c.nodes.values() if n.proc}]
            logs = {i: n.log_path.read_text(errors="replace") for i, n in c.nodes.items()}
            for p in ours(work):  # (the finding reported, nothing of ours is left behind)
                if p[1] == 1:
                    os.kill(p[0], signal.SIGKILL)
        print("actions:", dict(actions))
        print("acked increments:", sum(acked.values()), "lost:", lost)
        print("crashed (exited on their own):", crashed)
        print("replicas:", verdict.ok, verdict.summary)
        for i, info in infos.items():
            if info:
                print(f"  node {i}: applied {info.get('applied_index')} snapshot "
                      f"{info.get('snapshot_index')} role {info.get('role')}")
        print("processes outliving their node (pid, ppid, state):", stray)
        for i, text in logs.items():
            for word in ("snapshot child failed", "snapshot taken", "Traceback", "stopping"):
                print(f"  node {i} log: {word!r} x{text.count(word)}")
        ok = verdict.ok and not lost and not crashed and not stray
        print("OK" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0,
                  int(sys.argv[2]) if len(sys.argv) > 2 else 1))
