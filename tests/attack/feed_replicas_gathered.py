"""attack24b: do replicas' change feeds agree under gathered write runs, a tiny
--watch-retention-entries (the count bound cuts into entries), frequent snapshots and a
follower that restarts (its own snapshot) or installs the leader's? Real processes. Not a
test: ``python tests/attack/feed_replicas_gathered.py [ROUNDS]``.

Each round: concurrent pipelined SET/INCR clients and MSETs (a Bulk) for a while, one
follower killed meanwhile and restarted; then, with writes stopped and every node at the
same applied index, each node's whole feed (``XRANGE __raftkv:changes - +``) and its
``XREAD`` from ``0-0`` (Compacted names the oldest id kept) must be equal."""

from __future__ import annotations

import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from chaos_write_runs import Conn

from chaos.cluster import LocalCluster
from wire.resp import encode_command

FEED = b"__raftkv:changes"


def raw(addr: tuple[str, int], *cmd: bytes) -> bytes:
    for _ in range(50):  # (a restarted node: its port opens soon)
        try:
            sock = socket.create_connection(addr, timeout=10)
            break
        except ConnectionRefusedError:
            time.sleep(0.2)
    else:
        return b"(refused)"
    sock.sendall(encode_command(*cmd))
    data = b""
    sock.settimeout(1.0)
    try:
        while True:
            more = sock.recv(1 << 20)
            if not more:
                break
            data += more
    except TimeoutError:
        pass
    sock.close()
    return data


def writer(addr: tuple[str, int], cid: int, stop: threading.Event) -> None:
    rng = random.Random(cid)
    try:
        conn = Conn(addr)
        while not stop.is_set():
            if rng.random() < 0.1:
                n = rng.randint(60, 300)  # a Bulk
                args = [b"MSET"]
                for _ in range(n):
                    args += [b"m%d" % rng.randint(0, 500), b"v" * rng.randint(0, 9)]
                cmds = [args]
            else:
                cmds = [[b"SET", b"k%d:%d" % (cid, rng.randint(0, 50)), b"x" * rng.randint(0, 20)]
                        if rng.random() < 0.6 else [b"INCR", b"c%d" % cid]
                        for _ in range(rng.choice([1, 1, 5, 24]))]
            conn.sock.sendall(b"".join(encode_command(*c) for c in cmds))
            for _ in cmds:
                conn.reply()
    except (OSError, ConnectionError):
        pass


def main(rounds: int) -> int:
    bad = 0
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp), extra_args=[
            "--watch-retention-entries", "37", "--watch-retention-bytes", "20000",
            "--snapshot-entries", "40"], fsync="never") as cluster:
        for r in range(rounds):
            leader = cluster.wait_for_leader(timeout=30)
            addr = cluster.client_addr(leader)
            stop = threading.Event()
            threads = [threading.Thread(target=writer, args=(addr, 10 * r + c, stop))
                       for c in range(6)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            follower = random.choice([i for i in cluster.nodes if i != leader])
            cluster.kill(follower)
            time.sleep(random.uniform(0.5, 2.0))  # the leader compacts past it
            cluster.start(follower)
            time.sleep(1.0)
            stop.set()
            for t in threads:
                t.join(20)
            # every node at the same applied index
            deadline = time.monotonic() + 30
            while True:
                applied = {}
                for i in cluster.nodes:
                    info = raw(cluster.client_addr(i), b"INFO", b"raft")
                    line = next((x for x in info.split(b"\r\n")
                                 if x.startswith(b"last_applied:")), b"")
                    applied[i] = line
                if len(set(applied.values())) == 1 and b"" not in applied.values():
                    break
                if time.monotonic() > deadline:
                    print("round", r, "not caught up", applied)
                    bad += 1
                    break
                time.sleep(0.3)
            for i, n in cluster.nodes.items():
                if not n.alive:
                    print(f"round {r}: node {i} exited:",
                          Path(n.log_path).read_text(errors="replace")[-800:])
                    bad += 1
            feeds = {i: raw(cluster.client_addr(i), b"XRANGE", FEED, b"-", b"+")
                     for i in cluster.nodes}
            firsts = {i: raw(cluster.client_addr(i), b"XREAD", b"COUNT", b"1", b"STREAMS",
                             FEED, b"0-0")[:200] for i in cluster.nodes}
            same = len(set(feeds.values())) == 1 and len(set(firsts.values())) == 1
            print(f"round {r}: leader {leader}, restarted {follower}, "
                  f"{applied[leader].decode()}, feed {len(feeds[leader])} bytes, "
                  f"{'equal' if same else 'DIFFERENT'}; XREAD 0-0: {firsts[leader][:90]!r}")
            if not same:
                bad += 1
                for i in cluster.nodes:
                    print("  ", i, len(feeds[i]), feeds[i][:120], firsts[i][:120])
    print("bad:", bad)
    return bad


if __name__ == "__main__":
    sys.exit(1 if main(int(sys.argv[1]) if len(sys.argv) > 1 else 4) else 0)
