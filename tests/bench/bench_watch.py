"""The change feed under load: events/s delivered to 1, 10 and 100 watchers while
``redis-benchmark -t set -c 50`` runs, and what 100 watchers cost the SET throughput.

Run: .venv/bin/python tests/bench/bench_watch.py [--requests 3000] [--pairs 3] [--dir D]
                                                 [--baseline REF]

One 3-node cluster (fsync always). In each round, N watchers (client.watch on the whole
feed, spread over the three nodes, each on its own connection, all in this process) follow
the feed from its newest id while redis-benchmark sends ``--requests`` SETs from 50
connections to the leader. A round reports the SET rate, the changes delivered per second
to all watchers together and to each, and how long after the last SET the slowest watcher
had them all. Rounds of 0 and 100 watchers alternate (A B B A ...) so both see the same
machine load; the cost figure is the median of the 100/0 SET-rate ratios of adjacent
rounds with a bootstrap 95% interval. On a shared 2-core machine the watchers' own CPU (in
this process) competes with the nodes: the cost measured includes it, so each round also
prints the CPU the nodes and the watchers used while the SETs ran (cores: CPU seconds per
second), and the nodes' CPU per SET (ms) from the first SET to the last change delivered:
the node-side cost of the watchers is the rise of that figure, free of the watchers' own
CPU and of how much CPU the machine's other work left the nodes. ``--baseline REF`` runs
every round also on a second cluster of git ref REF's raftkv/ and wire/ (right after the
same round on this tree, so both see the same load) and prints both clusters' figures: a
before/after in one run.

``--follower N``: a figure the machine's load barely moves. N raw watchers on one follower
while a paced writer (5 pipelined SETs every 5 ms: many small applied batches, as a fast
machine's c50 SET makes) writes to the leader, in rounds of 0 and N watchers: the rise of
the follower's CPU per SET, over N, is the node CPU one change costs one watcher.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import selectors
import socket
import threading
import time
from typing import Any

import hiredis
import trio
from common import (
    baseline_cluster,
    load_line,
    median_ci,
    paired_ratios,
    percentile,
    raft_cluster,
    redis_benchmark,
    roles,
    scratch_dir,
)

from chaos.cluster import LocalCluster
from chaos.watchers import newest_id
from client.feed import ZERO
from client.watch import Watch
from raftkv.probe import call, parse_info


def _figures(run: Any, requests: int, watchers: int, seconds: float, delivered: int,
             drain: float, nodes_cpu: float, own_cpu: float, nodes_all: float,
             elections: float, lag: float) -> dict[str, Any]:
    """One round's figures (the rows main() prints), from what the round measured."""
    row = run.rows.get("SET")
    ok = bool(row) and not run.returncode
    return {"set": row.rps if ok else 0.0,
            "events": delivered / seconds, "drain": drain,
            "per_watcher": delivered / seconds / watchers if watchers else 0.0,
            "nodes_cpu": nodes_cpu / seconds, "own_cpu": own_cpu / seconds,
            "per_set": nodes_all / requests * 1000 if ok else math.inf,
            "elections": elections, "lag": lag, "alerts": float(len(run.alerts)),
            "alert": run.alerts[0][:200] if run.alerts else ""}


class RawWatchers(threading.Thread):
    """``n`` light watchers of the whole feed in one thread: raw sockets, hiredis's C
    parser, ``XREAD COUNT 1000 BLOCK 1000`` from the last id, no failover (``--raw``: the
    SET rate with watchers whose own CPU is small).

    Each watcher still has its own connection, follows the feed from its own last id and
    receives every reply whole; but a reply byte-for-byte equal to one already parsed
    (the node shares one encoded reply among the watchers at the same id: streams.py's
    ReplyCache) is not parsed again, its count and last id are looked up. Parsing every
    entry of every reply into Python objects took the bench 0.33-0.45 of the machine's 2
    cores on a quiet machine, CPU the nodes then lacked: the cost measured was partly the
    bench's own."""

    def __init__(self, addrs: list[str], n: int, start: tuple[int, int]) -> None:
        super().__init__(daemon=True)
        self.addrs, self.n = addrs, n
        self.last = [start] * n
        self.count = 0
        self.replies = 0  # XREAD replies with changes: the round trips the watchers made
        # (probe number, when a watcher had the reply carrying it): ``Probes`` latency.
        self.received: list[tuple[int, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        socks: list[socket.socket] = []
        parsers = []
        for i in range(self.n):
            host, port = self.addrs[i % len(self.addrs)].rsplit(":", 1)
            sock = socket.create_connection((host, int(port)))
            socks.append(sock)
            parsers.append(hiredis.Reader())
            sock.sendall(self._xread(i))
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, i)
        # A reply's (length, ends) -> (its bytes, (its entries, its last id)): the replies
        # the node shares.
        known: dict[tuple[int, bytes, bytes],
                    tuple[bytes, tuple[int, tuple[int, int] | None, tuple[int, ...]]]] = {}
        unparsed = [b""] * self.n  # a reply received in part (one XREAD in flight each)
        try:
            while not self.done.is_set():
                for key, _ in sel.select(timeout=0.2):
                    i = key.data
                    data = socks[i].recv(1 << 20)
                    if not data:
                        sel.unregister(socks[i])
                        continue
                    data = unparsed[i] + data if unparsed[i] else data
                    # (Looked up by its length and ends, then compared: hashing a whole
                    # 100 KB reply cost more than the compare.)
                    shape = (len(data), data[:64], data[-64:])
                    hit = known.get(shape)
                    seen = hit[1] if hit is not None and hit[0] == data else None
                    if seen is None:
                        parser = parsers[i] = hiredis.Reader()
                        parser.feed(data)
                        reply = parser.gets()
                        if reply is False:
                            unparsed[i] = data
                            continue
                        entries = reply[0][1] if isinstance(reply, list) and reply else []
                        seen = (len(entries), _id(entries[-1][0]) if entries else None,
                                _probes(entries))
                        if len(known) >= 4096:
                            known.clear()
                        known[shape] = (data, seen)
                    unparsed[i] = b""
                    if seen[2]:
                        now = time.perf_counter()
                        self.received += [(probe, now) for probe in seen[2]]
                    self.count += seen[0]
                    if seen[1] is not None:
                        self.replies += 1
                        self.last[i] = seen[1]
                    request = self._xread(i)
                    if socks[i].send(request) < len(request):  # (its send buffer is empty)
                        raise RuntimeError("a watcher's XREAD was not sent whole")
        finally:
            for sock in socks:
                sock.close()

    def _xread(self, i: int) -> bytes:
        return _command("XREAD", "COUNT", "1000", "BLOCK", "1000", "STREAMS", FEED_NAME,
                        "{}-{}".format(*self.last[i]))

    def wait_for(self, end: tuple[int, int], timeout: float) -> bool:
        """Wait until every watcher has ``end`` (True), or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        while min(self.last) < end:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


async def raw_round(cluster: LocalCluster, leader: int, watchers: int, requests: int,
                    clients: int) -> dict[str, Any]:
    """``one_round`` with ``RawWatchers`` (thread) instead of ``client.watch``."""
    addrs = [cluster.nodes[n].client_addr for n in sorted(cluster.nodes)]
    start = await trio.to_thread.run_sync(newest_sync, cluster.nodes[leader].client_addr)
    raw = RawWatchers(addrs, watchers, start)
    if watchers:
        raw.start()
        # The SETs start once every watcher is connected and blocked: 100 connections
        # accepted and their first XREADs are not what watching costs, and in a round of
        # a few thousand SETs (under a second) they weighed on the figures.
        await trio.to_thread.run_sync(_wait_blocked, cluster, watchers, 30.0)
    term = await trio.to_thread.run_sync(_term, cluster)
    await trio.to_thread.run_sync(_reset_lag, cluster)
    pids = [n.proc.pid for n in cluster.nodes.values() if n.proc]
    nodes_cpu = nodes_cpu_start = _cpu(pids)
    own_cpu = time.process_time()
    # (In every round, so the 0- and 100-watcher rounds carry the same writes.)
    probes = Probes(cluster.nodes[leader].client_addr)
    probes.start()
    began = trio.current_time()
    run = await trio.to_thread.run_sync(redis_benchmark, cluster.client_addr(leader)[1],
                                        "set", requests, clients)
    seconds = trio.current_time() - began
    nodes_cpu = _cpu(pids) - nodes_cpu
    own_cpu = time.process_time() - own_cpu
    probes.done.set()
    await trio.to_thread.run_sync(probes.join)
    elections = await trio.to_thread.run_sync(_term, cluster) - term
    delivered = raw.count
    end = await trio.to_thread.run_sync(newest_sync, cluster.nodes[leader].client_addr)
    drain = 0.0
    # (The blocked readers' window each node has at the last SET: README "Watching
    # changes"; a baseline without the field shows none.)
    windows = await trio.to_thread.run_sync(_info_figure, cluster, "blocked_readers_window_ms")
    if watchers:
        caught_up = await trio.to_thread.run_sync(raw.wait_for, end, 60.0)
        drain = trio.current_time() - began - seconds if caught_up else math.inf
        raw.done.set()
        await trio.to_thread.run_sync(raw.join)
    lag = await trio.to_thread.run_sync(_lag, cluster)
    nodes_all = _cpu(pids) - nodes_cpu_start
    figures = _figures(run, requests, watchers, seconds, delivered, drain, nodes_cpu, own_cpu,
                       nodes_all, elections, lag)
    figures["windows"] = windows
    # (How many round trips the watchers made: a reply carries the changes of one or
    # more applied batches, README "Watching changes": coalesced wake-ups.)
    figures["replies"] = raw.replies / watchers / seconds if watchers else 0.0
    figures["all_replies"] = float(raw.replies)
    # From a probe's acknowledgement to each watcher's reception of it (ms).
    latencies = probes.latencies(raw.received)
    figures["latency"] = ((percentile(latencies, 50), percentile(latencies, 99))
                          if latencies else None)
    return figures


async def one_round(cluster: LocalCluster, leader: int, watchers: int, requests: int,
                    clients: int) -> dict[str, Any]:
    nodes = sorted(cluster.nodes)
    start = await newest_id([cluster.client_addr(leader)])
    counts = [0] * watchers
    last = [ZERO] * watchers
    progress = [trio.Event()]

    async def follow(i: int, w: Watch) -> None:
        async for change in w:
            counts[i] += 1
            last[i] = change.id
            progress[0].set()
            progress[0] = trio.Event()

    async with trio.open_nursery() as nursery:
        for i in range(watchers):
            first = i % len(nodes)
            eps = [cluster.nodes[n].client_addr for n in nodes[first:] + nodes[:first]]
            nursery.start_soon(follow, i, Watch(eps, "*", str(start), block=1.0))
        term = await trio.to_thread.run_sync(_term, cluster)
        await trio.to_thread.run_sync(_reset_lag, cluster)
        nodes_cpu = nodes_cpu_start = _cpu([n.proc.pid for n in cluster.nodes.values()
                                            if n.proc])
        own_cpu = time.process_time()
        began = trio.current_time()
        run = await trio.to_thread.run_sync(redis_benchmark, cluster.client_addr(leader)[1],
                                            "set", requests, clients)
        seconds = trio.current_time() - began
        nodes_cpu = _cpu([n.proc.pid for n in cluster.nodes.values() if n.proc]) - nodes_cpu
        own_cpu = time.process_time() - own_cpu
        elections = await trio.to_thread.run_sync(_term, cluster) - term
        delivered = sum(counts)
        end = await newest_id([cluster.client_addr(leader)])
        drain = 0.0
        if watchers:
            with trio.move_on_after(60):
                while min(last) < end:
                    await progress[0].wait()
            drain = (trio.current_time() - began - seconds if min(last) >= end
                     else math.inf)
        nursery.cancel_scope.cancel()
    lag = await trio.to_thread.run_sync(_lag, cluster)
    # The nodes' CPU from the first SET to the last change delivered (the watchers may
    # still be reading after the last SET): what serving the SETs and their feed cost.
    nodes_all = _cpu([n.proc.pid for n in cluster.nodes.values() if n.proc]) - nodes_cpu_start
    return _figures(run, requests, watchers, seconds, delivered, drain, nodes_cpu, own_cpu,
                    nodes_all, elections, lag)


def _wait_blocked(cluster: LocalCluster, watchers: int, timeout: float) -> None:
    """Wait until the nodes hold ``watchers`` blocked XREADs (INFO's blocked_clients), or
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while sum(_info_figure(cluster, "blocked_clients")) < watchers:
        if time.monotonic() > deadline:
            print(f"  (not all {watchers} watchers blocked after {timeout:g} s)", flush=True)
            return
        time.sleep(0.02)


def _term(cluster: LocalCluster) -> int:
    """The highest term any node reports: a rise during a round is an election."""
    infos = [cluster.info(i) for i in cluster.nodes]
    return max(int(i.get("term", 0)) for i in infos if i) if any(infos) else 0


def drain_round(cluster: LocalCluster, node_id: int, watchers: int, changes: int
                ) -> dict[str, float]:
    """The node-side cost per delivered change, free of the SETs and of the watchers' own
    parsing: ``changes`` changes are written first (MSETs of 1,000 keys), then
    ``watchers`` raw-socket readers (hiredis's C parser, one thread, non-blocking sockets)
    each read the whole feed from the node with ``XREAD COUNT 1000``, while a PING is
    sent every 10 ms on another connection. Reports the node's CPU per delivered change
    (us), the watchers' CPU, and the slowest PING (the loop held by delivery)."""
    addr = cluster.nodes[node_id].client_addr
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        writer = hiredis.Reader()
        for batch in range(changes // 1000):
            args = ["MSET"] + [x for i in range(1000) for x in (f"d{batch}:{i}", "v")]
            s.sendall(_command(*args))
            reply: Any = False
            while reply is False:
                writer.feed(s.recv(65536))
                reply = writer.gets()
    end = newest_sync(addr)
    socks, readers, last = [], [], []
    start = [b"0"] * watchers
    pid = cluster.nodes[node_id].proc.pid  # type: ignore[union-attr]
    node_cpu, own_cpu, began = _cpu([pid]), time.process_time(), time.perf_counter()
    worst = 0.0
    stop = threading.Event()

    def pinger() -> None:
        nonlocal worst
        with socket.create_connection((host, int(port))) as p:
            while not stop.is_set():
                t = time.perf_counter()
                p.sendall(b"*1\r\n$4\r\nPING\r\n")
                p.recv(64)
                worst = max(worst, time.perf_counter() - t)
                stop.wait(0.01)
    ping = threading.Thread(target=pinger, daemon=True)
    ping.start()
    sel = selectors.DefaultSelector()
    for i in range(watchers):
        sock = socket.create_connection((host, int(port)))
        sock.setblocking(False)
        socks.append(sock)
        readers.append(hiredis.Reader())
        last.append(start[i])
        sock.sendall(_command("XREAD", "COUNT", "1000", "STREAMS", FEED_NAME, start[i]))
        sel.register(sock, selectors.EVENT_READ, i)
    delivered, left = 0, watchers
    while left:
        for key, _ in sel.select(timeout=30):
            i = key.data
            readers[i].feed(key.fileobj.recv(1 << 20))  # type: ignore[union-attr]
            while (reply := readers[i].gets()) is not False:
                entries = reply[0][1] if reply else []
                delivered += len(entries)
                if entries:
                    last[i] = entries[-1][0]
                if _id(last[i]) >= end:
                    sel.unregister(key.fileobj)
                    left -= 1
                else:
                    socks[i].setblocking(True)
                    socks[i].sendall(_command("XREAD", "COUNT", "1000", "STREAMS", FEED_NAME,
                                              last[i]))
                    socks[i].setblocking(False)
    seconds = time.perf_counter() - began
    node_cpu, own_cpu = _cpu([pid]) - node_cpu, time.process_time() - own_cpu
    stop.set()
    ping.join()
    for sock in socks:
        sock.close()
    return {"us_per_change": node_cpu / delivered * 1e6, "delivered": delivered,
            "seconds": seconds, "node_cpu": node_cpu, "own_cpu": own_cpu,
            "worst_ping_ms": worst * 1000}


def paced_writer(addr: str, stop: threading.Event, written: list[int]) -> None:
    """5 pipelined SETs every 5 ms to ``addr`` until ``stop``: many small applied batches,
    as a fast machine's c50 SET makes (a window longer than the batch interval shows)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        reader, i = hiredis.Reader(), 0
        while not stop.is_set():
            pipelined(s, reader, b"".join(_command("SET", f"p{i + j}", "v" * 50)
                                          for j in range(5)), 5)
            i += 5
            written[0] += 5
            stop.wait(0.005)


def _measured(addr: str) -> tuple[float, float]:
    """(INFO's blocked_readers_measured_ms, blocked_readers_served) of one node; (0, 0)
    from a node without the field."""
    with contextlib.suppress(OSError, ConnectionError, ValueError, KeyError):
        info = parse_info(call(addr, "INFO"))
        return (float(info["blocked_readers_measured_ms"]),
                float(info["blocked_readers_served"]))
    return 0.0, 0.0


def follower_round(cluster: LocalCluster, watchers: int, seconds: float
                   ) -> tuple[float, float, float, float]:
    """``watchers`` raw watchers on one follower while ``paced_writer`` writes to the
    leader for ``seconds``: (the follower's CPU per SET in us, SETs a second, replies a
    second per watcher, the work the window's rule measured per reply in us: INFO's
    blocked_readers_measured_ms over blocked_readers_served, 0 if the node has none). The
    follower does nothing for the SETs but apply them, so the rise of its CPU per SET over
    a 0-watcher round, over ``watchers``, is what serving one change to one watcher costs
    (CPU time: the machine's load barely moves it)."""
    leader, followers = roles(cluster)
    node = cluster.nodes[followers[0]]
    pid = node.proc.pid  # type: ignore[union-attr]
    stop, written = threading.Event(), [0]
    writer = threading.Thread(target=paced_writer, daemon=True,
                              args=(cluster.nodes[leader].client_addr, stop, written))
    writer.start()
    raw = RawWatchers([node.client_addr], watchers, newest_sync(cluster.nodes[leader].client_addr))
    if watchers:
        raw.start()
    try:
        time.sleep(0.5)
        cpu, replies, sets, began = _cpu([pid]), raw.replies, written[0], time.perf_counter()
        measured = _measured(node.client_addr)
        time.sleep(seconds)
        spent = time.perf_counter() - began
        cpu, replies, sets = _cpu([pid]) - cpu, raw.replies - replies, written[0] - sets
        after = _measured(node.client_addr)
        per_reply = ((after[0] - measured[0]) * 1000 / (after[1] - measured[1])
                     if after[1] > measured[1] else 0.0)
    finally:
        stop.set()
        raw.done.set()
        writer.join()
        if watchers:
            raw.join()
    return (cpu / sets * 1e6 if sets else math.inf, sets / spent,
            replies / spent / watchers if watchers else 0.0, per_reply)


FEED_NAME = "__raftkv:changes"
PROBE = b"probe:"


def _probes(entries: list[Any]) -> tuple[int, ...]:
    """The probe numbers among a reply's entries (``Probes``' keys)."""
    found = []
    for _, fields in entries:
        key = fields[3] if len(fields) > 3 else b""
        if key.startswith(PROBE):
            found.append(int(key[len(PROBE):]))
    return tuple(found)


class Probes(threading.Thread):
    """A SET of ``probe:<n>`` to ``addr`` every ``every`` seconds, each acknowledgement's
    time noted: a raw watcher's reception of probe n, less that time, is how long a change
    took from its write's acknowledgement (applied on the leader) to a watcher, coalescing
    window included (the latency the window costs)."""

    def __init__(self, addr: str, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.addr, self.every = addr, every
        self.acked: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        host, port = self.addr.rsplit(":", 1)
        with contextlib.suppress(OSError), socket.create_connection((host, int(port))) as s:
            reader, n = hiredis.Reader(), 0
            while not self.done.is_set():
                s.sendall(_command("SET", PROBE + b"%d" % n, "x"))
                reply: Any = False
                while reply is False:
                    data = s.recv(4096)
                    if not data:
                        return
                    reader.feed(data)
                    reply = reader.gets()
                if reply == b"OK":
                    self.acked[n] = time.perf_counter()
                n += 1
                self.done.wait(self.every)

    def latencies(self, received: list[tuple[int, float]]) -> list[float]:
        """Each reception's delay after its probe's acknowledgement (ms, sorted; a watcher
        faster than the probe's own reply counts 0)."""
        return sorted(max(at - self.acked[n], 0.0) * 1000 for n, at in received
                      if n in self.acked)


def pipelined(sock: socket.socket, reader: Any, payload: bytes, replies: int) -> None:
    """Send ``payload`` and read ``replies`` RESP replies with hiredis ``reader``."""
    sock.sendall(payload)
    got = 0
    while got < replies:
        reader.feed(sock.recv(65536))
        while reader.gets() is not False:
            got += 1


def _command(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        data = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _id(raw: bytes) -> tuple[int, int]:
    index, _, position = raw.partition(b"-")
    return (int(index), int(position or 0))


def newest_sync(addr: str) -> tuple[int, int]:
    reply = call(addr, "XREVRANGE", FEED_NAME, "+", "-", "COUNT", "1")
    return _id(reply[0][0]) if isinstance(reply, list) and reply else (0, 0)


def _reset_lag(cluster: LocalCluster) -> None:
    for node in cluster.nodes.values():
        with contextlib.suppress(OSError, ConnectionError):
            call(node.client_addr, "CONFIG", "RESETSTAT")


def _lag(cluster: LocalCluster) -> float:
    """The longest the nodes' event loops were held during the round (ms; INFO's
    ``loop_lag_max_ms``, since _reset_lag): how long a heartbeat could have waited."""
    return max(_info_figure(cluster, "loop_lag_max_ms"), default=0.0)


def _info_figure(cluster: LocalCluster, field: str) -> list[float]:
    """``field`` of each node's INFO (the nodes that answer and have it)."""
    figures = []
    for node in cluster.nodes.values():
        with contextlib.suppress(OSError, ConnectionError, ValueError, KeyError):
            figures.append(float(parse_info(call(node.client_addr, "INFO"))[field]))
    return figures


def _mid(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _cpu(pids: list[int]) -> float:
    """CPU seconds the processes have used (utime + stime, all threads)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError), \
                open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pairs", type=int, default=3, help="0/100-watcher round pairs")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--raw", action="store_true",
                    help="light raw-socket watchers (hiredis, one thread) instead of "
                         "client.watch")
    ap.add_argument("--drain", type=int, default=0, metavar="WATCHERS",
                    help="only the drain round: WATCHERS raw readers of 20,000 changes")
    ap.add_argument("--follower", type=int, default=0, metavar="WATCHERS",
                    help="only the follower rounds: WATCHERS raw watchers on a follower, "
                         "a paced writer (5 SETs every 5 ms), 0/WATCHERS rounds x --pairs")
    ap.add_argument("--seconds", type=float, default=6.0,
                    help="length of a --follower round")
    ap.add_argument("--baseline", default=None, metavar="REF",
                    help="also run every round on a cluster of git ref REF (before/after)")
    args = ap.parse_args()
    print(load_line())
    with contextlib.ExitStack() as stack:
        work = stack.enter_context(scratch_dir(args.dir, "bench-watch-"))
        systems = [("this tree", stack.enter_context(raft_cluster(work / "this")))]
        if args.baseline:
            systems.append((args.baseline, stack.enter_context(
                baseline_cluster(work / "base", args.baseline))))
        if args.follower:
            costs: dict[str, list[float]] = {name: [] for name, _ in systems}
            for p in range(args.pairs):
                for system, cluster in systems if p % 2 == 0 else systems[::-1]:
                    idle = follower_round(cluster, 0, args.seconds)
                    busy = follower_round(cluster, args.follower, args.seconds)
                    cost = (busy[0] - idle[0]) / args.follower
                    costs[system].append(cost)
                    # A reply's real cost to the node (its CPU rise over the replies) against
                    # what the window's rule measured of it: ROUND_TRIP_FACTOR's ratio.
                    real = (busy[0] - idle[0]) * busy[1] / (busy[2] * args.follower or 1)
                    ratio = (f"; real {real:.0f} us a reply, measured {busy[3]:.1f} "
                             f"(x{real / busy[3]:.1f})" if busy[3] else "")
                    print(f"  [{system}] follower CPU per SET: {idle[0]:.0f} us with no watcher "
                          f"({idle[1]:.0f} SET/s), {busy[0]:.0f} us with {args.follower} "
                          f"({busy[1]:.0f} SET/s, {busy[2]:.1f} replies a second each): "
                          f"{cost:.2f} us a change a watcher{ratio}", flush=True)
            for system, values in costs.items():
                print(f"[{system}] follower CPU a change a watcher (median of {len(values)}): "
                      f"{sorted(values)[len(values) // 2]:.2f} us; "
                      + ", ".join(f"{v:.2f}" for v in values))
            return 0
        if args.drain:
            for system, cluster in systems:
                leader, _ = roles(cluster)
                d = drain_round(cluster, leader, args.drain, 20_000)
                print(f"  [{system}] drain: {args.drain} raw watchers read "
                      f"{d['delivered']:.0f} changes in {d['seconds']:.1f} s: the node's CPU "
                      f"{d['us_per_change']:.2f} us a delivered change ({d['node_cpu']:.1f} s),"
                      f" the watchers' {d['own_cpu']:.1f} s; slowest PING meanwhile "
                      f"{d['worst_ping_ms']:.0f} ms", flush=True)
            return 0
        order: list[int] = []
        for p in range(args.pairs):
            order += [0, 100] if p % 2 == 0 else [100, 0]
        order += [1, 10]
        named: dict[str, list[tuple[str, float]]] = {name: [] for name, _ in systems}
        per_set: dict[str, dict[int, list[float]]] = {name: {} for name, _ in systems}
        # (--raw: the 100-watcher rounds' (nodes' CPU per SET in ms, XREAD replies in all))
        replied: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in systems}
        # (--raw: each round's change delay to its watchers, p50 and p99 ms, by watchers)
        delays: dict[str, dict[int, list[tuple[float, float]]]] = {
            name: {} for name, _ in systems}
        for k, n in enumerate(order):
            # (Which tree goes first alternates: in one run the tree that always went
            # first had 0.68x the other's SET rate in its 0-watcher rounds, same code.)
            for system, cluster in systems if k % 2 == 0 else systems[::-1]:
                leader, _ = roles(cluster)  # an election in the last round may have moved it
                r = trio.run(raw_round if args.raw else one_round, cluster, leader, n,
                             args.requests, args.clients)
                if n in (0, 100):
                    named[system].append(("with" if n == 100 else "without", r["set"]))
                cost = r["per_set"]
                per_set[system].setdefault(n, []).append(cost)
                if r.get("latency"):
                    delays[system].setdefault(n, []).append(r["latency"])
                if n == 100 and r.get("all_replies") and cost < math.inf:
                    replied[system].append((cost, r["all_replies"]))
                extra = (f", {r['events']:8.0f} changes/s delivered in all "
                         f"({r['per_watcher']:.0f}/s each"
                         + (f" in {r['replies']:.0f} replies/s" if "replies" in r else "")
                         + (" (windows " + "/".join(f"{w:.0f}" for w in r["windows"]) + " ms)"
                            if r.get("windows") else "")
                         + f"), all delivered {r['drain']:.2f} s after the last SET"
                         + (" (a change's delay to a watcher p50 {:.0f} ms, p99 {:.0f})".format(
                             *r["latency"]) if r.get("latency") else "")
                         if n else "")
                warn = f" ({r['alerts']:.0f} alerts, first: {r['alert']})" if r["alerts"] else ""
                if r["elections"]:
                    warn += f" [the term rose by {r['elections']} during the round]"
                tag = f"[{system}] " if len(systems) > 1 else ""
                print(f"  {tag}{n:3d} watchers: c{args.clients} SET {r['set']:7.0f}/s{extra}"
                      f"{warn}; CPU: nodes {r['nodes_cpu']:.2f} cores ({cost:.2f} ms a SET, "
                      f"delivery included), watchers {r['own_cpu']:.2f}; the longest a "
                      f"node's loop was held: {r['lag']:.0f} ms", flush=True)
        for system, _ in systems:
            ratios = paired_ratios(named[system])
            tag = f"[{system}] " if len(systems) > 1 else ""
            if ratios:
                mid, lo, hi = median_ci(ratios)
                print(f"{tag}watch: c{args.clients} SET with 100 watchers / with none over "
                      f"{len(ratios)} adjacent pairs: ratio {mid:.3f} (cost "
                      f"{(1 - mid) * 100:+.1f}%), 95% CI of the median {lo:.3f} .. {hi:.3f}; "
                      f"ratios {', '.join(f'{x:.3f}' for x in ratios)}")
            finite = {n: sorted(c for c in v if c < math.inf)  # (a failed round: inf)
                      for n, v in per_set[system].items()}
            costs = {n: v[len(v) // 2] for n, v in finite.items() if v}
            print(f"{tag}nodes' CPU per SET, delivery included (median, ms): " + ", ".join(
                f"{n} watchers {c:.2f}" for n, c in sorted(costs.items())))
            if delays[system]:
                print(f"{tag}a change's delay from its SET's acknowledgement to a watcher "
                      "(median over rounds of each round's p50 / p99, ms): " + ", ".join(
                          f"{n} watchers {_mid([d[0] for d in v]):.0f} / "
                          f"{_mid([d[1] for d in v]):.0f}"
                          for n, v in sorted(delays[system].items())))
            if len(systems) > 1 and system != systems[0][0]:
                # The same slot's rounds of the two trees, this tree over the baseline:
                # the 0-watcher rounds run the same code, so they show the bias left.
                for n in (0, 100):
                    mine, theirs = per_set[systems[0][0]].get(n, []), per_set[system].get(n, [])
                    pairs = [a / b for a, b in zip(mine, theirs, strict=False)
                             if 0 < b < math.inf and a < math.inf]
                    if pairs:
                        print(f"nodes' CPU per SET, {n} watchers, this tree / {system} in the "
                              f"same slot (median of {len(pairs)}): {_mid(pairs):.3f}; "
                              + ", ".join(f"{x:.2f}" for x in sorted(pairs)))
            if 0 in costs and replied[system]:
                # What a watcher's round trip costs the nodes: the rise of the CPU per SET
                # over the 0-watcher median, times the SETs, over the replies sent.
                per_reply = sorted((cost - costs[0]) * args.requests / replies * 1000
                                   for cost, replies in replied[system])
                print(f"{tag}nodes' CPU per watcher reply (100-watcher rounds, us): "
                      + ", ".join(f"{x:.0f}" for x in per_reply))
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
