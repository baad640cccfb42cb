"""The cost of client sessions: c50 INCR with and without ``RAFT ONCE``, in one run.

Run: .venv/bin/python tests/bench/bench_sessions.py [--clients 50] [--seconds 5] [--rounds 8]
     [--baseline REF]  (also a cluster of git REF's raftkv and wire, in the same rounds)

One 3-node cluster (fsync always). ``--clients`` connections to the leader each send INCR
after INCR, one at a time, for ``--seconds``: either plainly, or each tagged ``RAFT ONCE id
seq`` with a session of its own (opened before the round, outside the timing). The two kinds
alternate (A B B A A B ...) so both see the same machine load; the figures are the medians
of the with/without ratios of adjacent rounds, with a bootstrap 95% interval, of throughput
and of the three nodes' CPU time per INCR (summed over their threads: what RaftKV spends,
which the machine's load barely moves).

With ``--baseline REF`` a second 3-node cluster runs REF's code, and each round runs the
four (tree, kind) pairs, this tree and REF alternating (A B B A): the with/without figures
of each tree, and this tree's CPU per INCR over REF's for each kind, paired by round.

The driver (trio, in this process) shares the CPU with the nodes, so it must cost the same
per command for both kinds: every request is pre-encoded RESP (a RAFT ONCE request is its
fixed prefix, the sequence number and its fixed suffix joined), and a reply is one integer
line checked by its first byte, never parsed into objects. Its own CPU per INCR is printed
for both kinds. (``redis-benchmark`` cannot drive sessions: its ``__rand_int__`` is random,
and a random sequence number repeats (answered from the record, never applied) or falls
below the acknowledged window (refused), so it would measure neither.)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import trio
from common import (
    BaselineCluster,
    _schedstat,
    export_tree,
    load_line,
    median_ci,
    paired_ratios,
    raft_cluster,
    roles,
    scratch_dir,
)

from chaos.cluster import LocalCluster
from wire.resp import encode_command

REPLY_LIMIT = 4096  # an integer reply is a few bytes; anything longer is an error's text


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


class Requests:
    """A client's next request as bytes: plain INCR (one constant), or RAFT ONCE with the
    next sequence number (constant prefix + seq + constant suffix)."""

    def __init__(self, key: bytes, sid: int | None) -> None:
        self.seq = 0
        if sid is None:
            self.prefix, self.suffix = encode_command(b"INCR", key), b""
        else:
            self.prefix = b"*6\r\n" + _bulk(b"RAFT") + _bulk(b"ONCE") + _bulk(b"%d" % sid)
            self.suffix = _bulk(b"INCR") + _bulk(key)
        self.once = sid is not None

    def next(self) -> bytes:
        self.seq += 1
        if not self.once:
            return b"%s%s" % (self.prefix, self.suffix)  # the same join as ONCE's
        seq = b"%d" % self.seq
        return b"%s$%d\r\n%s\r\n%s" % (self.prefix, len(seq), seq, self.suffix)


async def _reply(stream: trio.SocketStream) -> bytes:
    """One reply line (integer or error), without its CRLF."""
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = await stream.receive_some(REPLY_LIMIT)
        if not chunk or len(data) > REPLY_LIMIT:
            raise ConnectionError(f"connection closed or reply too long: {data[:80]!r}")
        data += chunk
    return data[:-2]


async def _client(addr: tuple[str, int], sessions: bool, key: bytes, stop_at: float,
                  counts: list[int], errors: list[str]) -> None:
    stream = await trio.open_tcp_stream(*addr)
    async with stream:
        sid = None
        if sessions:
            await stream.send_all(encode_command(b"RAFT", b"SESSION", b"OPEN"))
            reply = await _reply(stream)
            if not reply.startswith(b":"):
                errors.append(reply.decode(errors="replace"))
                return
            sid = int(reply[1:])
        requests = Requests(key, sid)
        while trio.current_time() < stop_at:
            await stream.send_all(requests.next())
            reply = await _reply(stream)
            if reply[:1] != b":":
                errors.append(reply.decode(errors="replace"))
                return
            counts[0] += 1


async def one_round(addr: tuple[str, int], sessions: bool, clients: int,
                    seconds: float) -> tuple[int, float, list[str]]:
    """(INCRs answered, wall seconds, errors) of one round."""
    counts, errors = [0], []
    started = trio.current_time()
    stop_at = started + seconds
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(_client, addr, sessions, b"ctr%d" % (i % 8), stop_at, counts,
                               errors)
    return counts[0], trio.current_time() - started, errors


def node_cpu_ns(cluster: LocalCluster) -> dict[int, int]:
    """On-CPU ns of each node process, summed over its threads."""
    out = {}
    for i, node in cluster.nodes.items():
        stat = _schedstat(node.proc.pid) if node.proc else None
        if stat:
            out[i] = stat[0]
    return out


SLOW_ELECTIONS = ["--election-ticks", "100"]


@contextlib.contextmanager
def slow_election_cluster(work: Path) -> Iterator[LocalCluster]:
    """A started 3-node cluster (fsync always) with a long election timeout: on a loaded
    2-core machine a spurious election mid-round would end that round's clients."""
    with raft_cluster(work, extra_args=SLOW_ELECTIONS) as cluster:
        yield cluster


@contextlib.contextmanager
def slow_election_baseline(work: Path, ref: str) -> Iterator[LocalCluster]:
    """The same cluster running git ``ref``'s raftkv and wire."""
    cluster = BaselineCluster(work / "cluster", export_tree(ref, work / "src"), nodes=3,
                              fsync="always", extra_args=SLOW_ELECTIONS)
    try:
        cluster.start()
        cluster.wait_for_leader(timeout=30)
        yield cluster
    finally:
        cluster.close()


def run_round(cluster: LocalCluster, sessions: bool, args: argparse.Namespace
              ) -> tuple[float, float, float, float, list[str]]:
    """One round: (INCR/s, nodes' CPU us per INCR, the leader's, the driver's, errors);
    the rates are 0 if the round failed."""
    leader, _ = roles(cluster)  # (again each round: a leader change moves it)
    addr = cluster.client_addr(leader)
    nodes_before, driver_before = node_cpu_ns(cluster), time.process_time_ns()
    done, took, errors = trio.run(one_round, addr, sessions, args.clients, args.seconds)
    spent = {i: ns - nodes_before.get(i, ns) for i, ns in node_cpu_ns(cluster).items()}
    per = 1000 * max(done, 1)
    driver_us = (time.process_time_ns() - driver_before) / 1000 / max(done, 1)
    ok = done > 0 and not errors
    return (done / took if ok else 0.0, sum(spent.values()) / per if ok else 0.0,
            spent.get(leader, 0) / per, driver_us, errors)


def compare_trees(this: LocalCluster, base: LocalCluster, ref: str,
                  args: argparse.Namespace) -> None:
    """Both trees, both kinds, in every round (A B B A order), and the paired ratios."""
    trees = {"this": this, ref: base}
    cpu: dict[tuple[str, str], list[float]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        order = [(t, k) for t in trees for k in ("without", "with")]
        for tree, kind in (order if r % 2 == 0 else order[::-1]):
            rate, nodes_us, leader_us, driver_us, errors = run_round(
                trees[tree], kind == "with", args)
            cpu.setdefault((tree, kind), []).append(nodes_us)
            rates.setdefault((tree, kind), []).append(rate)
            note = f" errors: {errors[0][:80]} (x{len(errors)})" if errors else ""
            print(f"  {tree:>8} c{args.clients} INCR {kind:>7} sessions: {rate:8.0f}/s, nodes' "
                  f"CPU {nodes_us:5.0f} us/INCR (leader {leader_us:.0f}), driver's "
                  f"{driver_us:4.0f} us/INCR{note}")
    for tree in trees:
        ratios = [w / wo for w, wo in zip(cpu[(tree, "with")], cpu[(tree, "without")],
                                          strict=True) if w and wo]
        if ratios:
            print(f"{tree}: nodes' CPU per INCR with/without sessions over {len(ratios)} rounds: "
                  f"{_ci(ratios)}; medians {statistics.median(cpu[(tree, 'without')]):.0f} -> "
                  f"{statistics.median(cpu[(tree, 'with')]):.0f} us")
    for tree in trees:
        ratios = [w / wo for w, wo in zip(rates[(tree, "with")], rates[(tree, "without")],
                                          strict=True) if w and wo]
        if ratios:
            print(f"{tree}: c{args.clients} INCR/s with/without sessions over {len(ratios)} "
                  f"rounds: {_ci(ratios)}; medians "
                  f"{statistics.median(rates[(tree, 'without')]):.0f} -> "
                  f"{statistics.median(rates[(tree, 'with')]):.0f}/s")
    for kind in ("without", "with"):
        ratios = [a / b for a, b in zip(cpu[("this", kind)], cpu[(ref, kind)], strict=True)
                  if a and b]
        if ratios:
            print(f"{kind} sessions: nodes' CPU per INCR, this tree / {ref}, over {len(ratios)} "
                  f"rounds: {_ci(ratios)}")


def _ci(ratios: list[float]) -> str:
    mid, lo, hi = median_ci(ratios)
    return (f"median {(mid - 1) * 100:+.1f}%, 95% CI of the median {(lo - 1) * 100:+.1f}% "
            f".. {(hi - 1) * 100:+.1f}%")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--baseline", metavar="REF", default=None,
                    help="also run git REF's raftkv and wire in a second cluster, alternating")
    args = ap.parse_args()
    print(load_line())
    if args.baseline:
        with (scratch_dir(args.dir, "bench-sessions-") as work,
              slow_election_cluster(work / "this") as this,
              slow_election_baseline(work / "base", args.baseline) as base):
            compare_trees(this, base, args.baseline, args)
        print(load_line())
        return 0
    with scratch_dir(args.dir, "bench-sessions-") as work, slow_election_cluster(work) as cluster:
        order: list[str] = []
        for r in range(args.rounds):
            order += ["without", "with"] if r % 2 == 0 else ["with", "without"]
        rates: list[tuple[str, float]] = []
        node_cpu: list[tuple[str, float]] = []
        driver_cpu: dict[str, list[float]] = {"without": [], "with": []}
        split: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
        for name in order:
            leader, _ = roles(cluster)  # (again each round: a leader change moves it)
            addr = cluster.client_addr(leader)
            nodes_before, driver_before = node_cpu_ns(cluster), time.process_time_ns()
            done, took, errors = trio.run(one_round, addr, name == "with", args.clients,
                                          args.seconds)
            spent = {i: ns - nodes_before.get(i, ns) for i, ns in node_cpu_ns(cluster).items()}
            per = 1000 * max(done, 1)
            nodes_us = sum(spent.values()) / per
            leader_us = spent.get(leader, 0) / per
            split[name].append((leader_us, nodes_us - leader_us))
            driver_us = (time.process_time_ns() - driver_before) / 1000 / max(done, 1)
            ok = done > 0 and not errors
            rates.append((name, done / took if ok else 0.0))
            node_cpu.append((name, nodes_us if ok else 0.0))
            if ok:
                driver_cpu[name].append(driver_us)
            note = f" errors: {errors[0][:80]} (x{len(errors)})" if errors else ""
            print(f"  c{args.clients} INCR {name:>7} sessions: {done / took:8.0f}/s, nodes' CPU "
                  f"{nodes_us:5.0f} us/INCR (leader {leader_us:.0f}), driver's "
                  f"{driver_us:4.0f} us/INCR{note}")
        ratios = paired_ratios(rates)
        if ratios:
            print(f"sessions: c{args.clients} INCR/s with/without over {len(ratios)} adjacent "
                  f"pairs: {_ci(ratios)}")
        cpu_ratios = paired_ratios(node_cpu)
        if cpu_ratios:
            print(f"sessions: nodes' CPU per INCR with/without over {len(cpu_ratios)} adjacent "
                  f"pairs: {_ci(cpu_ratios)}")
        if split["with"] and split["without"]:
            print("nodes' CPU per INCR (median): " + ", ".join(
                f"{name} sessions: leader {statistics.median(a for a, _ in v):.0f} us + the "
                f"two followers {statistics.median(b for _, b in v):.0f} us"
                for name, v in split.items()))
        if driver_cpu["with"] and driver_cpu["without"]:
            print("driver's CPU per INCR (median): without "
                  f"{statistics.median(driver_cpu['without']):.1f} us, with "
                  f"{statistics.median(driver_cpu['with']):.1f} us")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
