"""300 readers of the whole change feed that do not read their replies (issue 12).

Run: .venv/bin/python tests/bench/attack_xrange_readers.py [--readers 300] [--seconds 30]
[--baseline REF] [--base-port 7200]

A 3-node cluster (fsync never: the attack is on the reply path, not the disk) whose feed
holds its default retention of 4 KiB values (64 MiB: about 16,000 changes). Then
``--readers`` connections to the leader each send ``XRANGE __raftkv:changes - +`` (half of
them ``XREVRANGE __raftkv:changes + -``, no COUNT) a few times pipelined, with a 4 KiB
receive buffer, and never read. Meanwhile a probe client sends ``SET``/``GET`` every
100 ms. Printed: the leader's peak RSS (VmHWM) and RSS over the run, INFO's
``loop_lag_max_ms`` and the output-buffer disconnect counters, whether the leader and its
term stayed, the probe's slowest round trip and failures, and how many readers the node
disconnected. With ``--baseline REF`` the same run is done on REF's tree, after this one.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis
from common import BaselineCluster, export_tree, load_line

from chaos.cluster import LocalCluster

VALUE = b"v" * 4096


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            fields[name] = rest
    return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)


def resp(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def run(c: LocalCluster, readers: int, seconds: float, per_reader: int,
        control: bool = False, profile: str = "") -> None:
    c.start()
    for start in range(0, 20_000, 200):
        while True:  # the load itself may see a leader change on a loaded machine
            leader = c.wait_for_leader(timeout=30)
            host, port = c.client_addr(leader)
            pipe = redis.Redis(host=host, port=port, socket_timeout=30).pipeline(False)
            for i in range(start, start + 200):
                pipe.set(b"k%06d" % i, VALUE)
            try:
                pipe.execute()
                break
            except redis.RedisError:
                continue
    time.sleep(2)  # let the followers' snapshots/appends settle: nothing to wait on
    leader = c.wait_for_leader(timeout=30)
    host, port = c.client_addr(leader)
    r = redis.Redis(host=host, port=port, socket_timeout=30)
    term = int(c.info(leader)["term"])
    pid = c.nodes[leader].proc.pid  # type: ignore[union-attr]
    r.execute_command("CONFIG", "RESETSTAT")
    base_rss = rss(pid)[0]
    print(f"  leader {leader} term {term}; feed "
          f"{r.xinfo_stream('__raftkv:changes')['length']} entries; "
          f"RSS before {base_rss / 2**20:.0f} MiB", flush=True)
    spy = None
    if profile:
        spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-d", str(int(seconds)),
                                "-f", "raw", "-o", profile, "-r", "200", "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    started = time.time()
    for i in range(readers):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, port))
        cmd = (resp(b"PING") if control else
               resp(b"XREVRANGE", b"__raftkv:changes", b"+", b"-") if i % 2 else
               resp(b"XRANGE", b"__raftkv:changes", b"-", b"+"))
        s.sendall(cmd * per_reader)
        socks.append(s)
    stop = threading.Event()
    samples: list[int] = []
    probe: dict[str, float] = {"slowest": 0.0, "failures": 0, "ok": 0}

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                samples.append(rss(pid)[0])
            stop.wait(0.05)

    def probe_loop() -> None:
        p = redis.Redis(host=host, port=port, socket_timeout=10)
        n = 0
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                p.set(b"probe", b"%d" % n)
                assert p.get(b"probe") == b"%d" % n
                probe["ok"] += 1
            except (redis.RedisError, OSError, AssertionError):
                probe["failures"] += 1
            probe["slowest"] = max(probe["slowest"], time.monotonic() - t0)
            n += 1
            stop.wait(0.1)

    threads = [threading.Thread(target=sample), threading.Thread(target=probe_loop)]
    for t in threads:
        t.start()
    time.sleep(seconds)  # the attack's duration: nothing to wait for but time
    stop.set()
    for t in threads:
        t.join()
    if spy is not None:
        spy.wait()
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            while True:
                data = s.recv(1 << 20)
                if not data:
                    closed += 1
                    break
        except (BlockingIOError, ConnectionResetError) as exc:
            closed += isinstance(exc, ConnectionResetError)
        s.close()
    info = r.info("stats")
    after = c.info(leader) or {}
    hwm = rss(pid)[1]
    print(f"  RSS peak (VmHWM) {hwm / 2**20:.0f} MiB, sampled max {max(samples) / 2**20:.0f} "
          f"MiB (+{(max(samples) - base_rss) / 2**20:.0f}); loop_lag_max_ms "
          f"{info.get('loop_lag_max_ms')}, stalls {info.get('loop_lag_stalls')}; output "
          f"buffer disconnects {info.get('client_output_buffer_disconnects')}, total-limit "
          f"disconnects {info.get('client_buffer_total_disconnects')}; readers closed by the "
          f"node {closed}/{readers}", flush=True)
    print("  INFO stats: " + ", ".join(f"{k}={v}" for k, v in info.items()
                                        if k.startswith(("loop_lag", "gc_full"))), flush=True)
    stalls = [line for line in c.nodes[leader].log_path.read_text(errors="replace").splitlines()
              if "stalled" in line or "garbage" in line or "disconnect" in line]
    print(f"  leader log: {len(stalls)} stall/gc/disconnect lines; first: "
          + " | ".join(stalls[:6]), flush=True)
    for n in c.nodes.values():
        lines = [line for line in n.log_path.read_text(errors="replace").splitlines()
                 if "term changed" in line or "role changed" in line]
        print(f"  node {n.id} election lines: " + " | ".join(lines[-4:]), flush=True)
    print(f"  attack started {time.strftime('%H:%M:%S', time.gmtime(started))}")
    print(f"  leader after: {after.get('role')} term {after.get('term')} (was leader, "
          f"term {term}); probe: {int(probe['ok'])} ok, {int(probe['failures'])} failed, "
          f"slowest {probe['slowest'] * 1000:.0f} ms; all nodes alive: "
          f"{all(n.alive for n in c.nodes.values())}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", type=int, default=300)
    ap.add_argument("--per-reader", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--baseline", default="")
    ap.add_argument("--base-port", type=int, default=7200)
    ap.add_argument("--control", action="store_true",
                    help="the same connections sending PING: the machine's own noise")
    ap.add_argument("--profile", default="", help="py-spy raw stacks of the leader to FILE")
    a = ap.parse_args()
    print(load_line())
    ports = [(a.base_port + 2 * i, a.base_port + 2 * i + 1) for i in range(3)]
    with tempfile.TemporaryDirectory(prefix="bench-xrange-") as tmp:
        d = Path(tmp)
        trees = [("this tree", None)] + ([(a.baseline, a.baseline)] if a.baseline else [])
        for name, ref in trees:
            print(f"[{name}]", flush=True)
            if ref is None:
                c: LocalCluster = LocalCluster(d / "this", ports=ports, fsync="never")
            else:
                c = BaselineCluster(d / "base", export_tree(ref, d / "src"), ports=ports,
                                    fsync="never")
            try:
                run(c, a.readers, a.seconds, a.per_reader, a.control, a.profile)
            finally:
                c.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
