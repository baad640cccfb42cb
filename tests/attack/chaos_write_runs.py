"""Write runs under leader kills and transfers (attack24), on real processes. Not a test:
``python tests/attack/chaos_write_runs.py SECONDS [CLIENTS] [--mixed]``; ``--mixed``
(attack24b): batches of 1 (lone writes, gathered across connections), 3 or 24.

Each client pipelines batches of ``INCR c<i>`` and ``SET k<i>:<n> <n>`` (one run each on a
leader) to a node, reconnecting anywhere on errors, while the leader is killed -9 and
restarted, paused (SIGSTOP) and resumed, or asked to transfer. Checked at the end: every
acknowledged SET is there with its value; each client's acknowledged INCR values are
strictly increasing and distinct; its counter is at least the acknowledged count and at
most acknowledged + unknown (a write answered with any other error must not have applied)."""

from __future__ import annotations

import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from chaos.cluster import LocalCluster
from wire.resp import encode_command

BATCH = 24
MIXED = "--mixed" in sys.argv[1:]
SIZES = [1, 1, 1, 3, BATCH] if MIXED else [BATCH]


class Conn:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=10)
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> bytes | int | None:
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if rest == b"-1":
                return None
            n = int(rest)
            while len(self.buf) < n + 2:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed")
                self.buf += data
            value, self.buf = self.buf[:n], self.buf[n + 2:]
            return value
        return line  # +OK, -ERR...


class Client(threading.Thread):
    def __init__(self, cid: int, cluster: LocalCluster, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cid, self.cluster, self.stop = cid, cluster, stop
        self.incr_acks: list[int] = []
        self.unknown = 0
        self.refused: list[bytes] = []
        self.set_acks: dict[bytes, bytes] = {}
        self.problems: list[str] = []
        self.seq = 0

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            cmds: list[list[bytes]] = []
            answered = 0
            try:
                if conn is None:
                    node = random.choice([i for i, n in self.cluster.nodes.items() if n.alive])
                    conn = Conn(self.cluster.client_addr(node))
                cmds = []
                for _ in range(random.choice(SIZES)):
                    if random.random() < 0.5:
                        cmds.append([b"INCR", b"c%d" % self.cid])
                    else:
                        self.seq += 1
                        cmds.append([b"SET", b"k%d:%d" % (self.cid, self.seq),
                                     b"%d" % self.seq])
                answered = 0
                conn.sock.sendall(b"".join(encode_command(*c) for c in cmds))
                for c in cmds:
                    r = conn.reply()
                    answered += 1
                    self._record(c, r)
            except (OSError, ConnectionError):
                # (the batch's unanswered commands: outcome unknown)
                self.unknown += sum(1 for c in cmds[answered:] if c[0] == b"INCR")
                conn = None
                time.sleep(0.05)

    def _record(self, c: list[bytes], r: object) -> None:
        if c[0] == b"INCR":
            if isinstance(r, int):
                if self.incr_acks and r <= self.incr_acks[-1]:
                    self.problems.append(f"INCR ack {r} after {self.incr_acks[-1]}")
                self.incr_acks.append(r)
            elif isinstance(r, bytes) and r.startswith(b"-UNKNOWN"):
                self.unknown += 1
            elif isinstance(r, bytes) and r.startswith(b"-"):
                self.refused.append(r)
            else:
                self.problems.append(f"INCR answered {r!r}")
        else:
            if r == b"+OK":
                self.set_acks[c[1]] = c[2]
            elif isinstance(r, bytes) and r.startswith(b"-UNKNOWN"):
                pass
            elif isinstance(r, bytes) and r.startswith(b"-"):
                self.refused.append(r)
            else:
                self.problems.append(f"SET answered {r!r}")


def main(seconds: float, clients: int) -> int:
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp)) as cluster:
        cluster.wait_for_leader()
        stop = threading.Event()
        workers = [Client(i, cluster, stop) for i in range(clients)]
        for w in workers:
            w.start()
        end = time.monotonic() + seconds
        faults = 0
        while time.monotonic() < end:
            time.sleep(random.uniform(0.5, 1.5))
            leader = cluster.wait_for_leader(timeout=30)
            roll = random.random()
            if roll < 0.3:
                cluster.pause(leader)  # a deposed leader that comes back (CheckQuorum)
                time.sleep(random.uniform(0.3, 1.5))
                cluster.resume(leader)
            elif roll < 0.6:
                cluster.kill(leader)
                time.sleep(random.uniform(0.2, 1.0))
                cluster.start(leader)
            else:
                target = random.choice([i for i in cluster.nodes if i != leader])
                try:
                    conn = Conn(cluster.client_addr(leader))
                    conn.sock.sendall(encode_command(b"RAFT", b"TRANSFER", b"%d" % target))
                    conn.reply()
                except (OSError, ConnectionError):
                    pass
            faults += 1
        stop.set()
        for w in workers:
            w.join(30)
        leader = cluster.wait_for_leader(timeout=30)
        conn = Conn(cluster.client_addr(leader))
        bad = 0
        total_sets = 0
        for w in workers:
            conn.sock.sendall(encode_command(b"GET", b"c%d" % w.cid))
            final = conn.reply()
            final = int(final) if final is not None else 0
            acked = len(w.incr_acks)
            if not acked <= final <= acked + w.unknown:
                bad += 1
                print(f"client {w.cid}: counter {final}, acked {acked}, unknown {w.unknown}")
            if len(set(w.incr_acks)) != acked:
                bad += 1
                print(f"client {w.cid}: duplicate INCR values")
            keys = list(w.set_acks)
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                conn.sock.sendall(encode_command(b"MGET", *chunk))
                line = conn.line()
                n = int(line[1:])
                for key in chunk[:n]:
                    value = conn.reply()
                    if value != w.set_acks[key]:
                        bad += 1
                        print(f"client {w.cid}: acked {key!r} = {w.set_acks[key]!r}, "
                              f"found {value!r}")
            total_sets += len(keys)
            bad += len(w.problems)
            for p in w.problems[:5]:
                print(f"client {w.cid}: {p}")
        refused = sorted({r[:60] for w in workers for r in w.refused})
        print(f"faults {faults}; INCR acked {sum(len(w.incr_acks) for w in workers)}, "
              f"unknown {sum(w.unknown for w in workers)}; SET acked {total_sets}; "
              f"refused {sum(len(w.refused) for w in workers)}: {refused}")
        print("bad:", bad)
        return bad


if __name__ == "__main__":
    numbers = [arg for arg in sys.argv[1:] if arg != "--mixed"]
    sys.exit(1 if main(float(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 4)
             else 0)
