"""Nanoseconds per command of the two overheads the README promises are small, in one run:
the per-command metrics (``--metrics-addr``) and client sessions (``RAFT ONCE``).

Run: .venv/bin/python tests/bench/bench_overheads_micro.py [--commands N] [--repeats R]
     [--against GIT_REF [--rounds P]]  (before/after: REF's raftkv and wire against this
     tree's, in alternating child processes, the least of each figure per tree)

Everything runs in this one process, on one core, so the figures are CPU time (not wall
time) and the kinds being compared alternate (A B B A ...) within the run; each figure is
the least over the repeats (the run that other work on the machine disturbed least: on a
shared machine, cache misses from other processes only ever add). No network: what is
measured is RaftKV's own code.

0. The RESP parser on plain commands (SET of a 100-byte value, an 8-argument MSET): what
   the parser's cost per argument means for commands without sessions.
1. Metrics: ``NodeMetrics.track`` plus the reply that ends the timing, on, off; and one
   group commit's WAL instruments (``wal_fsync.observe`` + ``wal_bytes.inc``).
2. Sessions, stage by stage, plain ``INCR k`` against ``RAFT ONCE sid seq INCR k``:
   - parse: the client port's RESP parser on the pre-encoded requests;
   - apply: ``KVStateMachine.apply`` of the log entries (what every replica pays);
   - end to end: parse, ``commands.execute`` (ACL gate, refusals, RAFT ONCE translation,
     validation, entry encoding, proposal), the node's ready loop, WAL write (no fsync),
     apply, the reply's RESP encoding, on an in-process one-node node with 50 commands in
     flight (a leader's share of the work, without the replication to followers).
   ``once xN`` is ``RAFT ONCE`` with ``SESSIONS`` sessions taking turns, as the cluster
   bench's clients do (one session each): every command touches another session's record.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio
from common import export_tree

from chaos.cluster import free_ports
from raftkv.kv import KVStateMachine, encode_entry
from raftkv.metrics import NodeMetrics
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients
from raftkv.server.commands import execute
from raftkv.server.connection import Connection
from wire.resp import CommandParser, encode_command, encode_reply

WINDOW = 50  # commands in flight, as c50
KEYS = 8


def interleaved(kinds: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Each kind's least over ``repeats`` runs, run A B B A A B ... (ns per command)."""
    names = list(kinds)
    got: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            got[name].append(kinds[name]())
    return {name: min(v) for name, v in got.items()}


def show(title: str, medians: dict[str, float]) -> None:
    """One stage's figures; the second and later kinds also against the first, except in
    the parser's plain-command stage (different commands, not an overhead)."""
    base = next(iter(medians.values()))
    compare = not title.startswith("parse:")
    parts = [f"{name} {ns:7.0f} ns" + (f" ({ns - base:+.0f} ns, {ns / base - 1:+.1%})"
                                       if i and compare else "")
             for i, (name, ns) in enumerate(medians.items())]
    print(f"  {title:<50} " + "; ".join(parts))


# -- 1. metrics ---------------------------------------------------------------------------

def metrics_track(enabled: bool, n: int) -> float:
    m = NodeMetrics(_NoNode(), enabled=enabled)  # type: ignore[arg-type]
    names = [b"SET", b"GET", b"INCR", b"set"]
    pendings = [Pending() for _ in range(n)]
    started = time.process_time_ns()
    for i, pending in enumerate(pendings):
        m.track(names[i & 3], pending)
        pending.set(i)
    return (time.process_time_ns() - started) / n


def metrics_wal(n: int) -> float:
    m = NodeMetrics(_NoNode())  # type: ignore[arg-type]
    started = time.process_time_ns()
    for i in range(n):
        m.wal_fsync.observe(0.0004 + (i & 7) * 0.001)
        m.wal_bytes.inc(4096)
    return (time.process_time_ns() - started) / n


class _NoNode:
    """The collectors are not scraped here: they never read the node."""


# -- 2. sessions --------------------------------------------------------------------------

SID = 4_611_686_018_427_387_905  # a 19-digit id, as RAFT SESSION OPEN draws them
SESSIONS = 50  # ``once xN``: as many sessions as bench_sessions.py's clients
MANY = f"once x{SESSIONS}"


def requests(kind: str, n: int) -> list[bytes]:
    if kind == "plain":
        return [encode_command(b"INCR", b"ctr%d" % (i % KEYS)) for i in range(n)]
    return [encode_command(b"RAFT", b"ONCE", b"%d" % SID, b"%d" % (i + 1), b"INCR",
                           b"ctr%d" % (i % KEYS)) for i in range(n)]


def parse(reqs: list[bytes]) -> float:
    parser = CommandParser()
    started = time.process_time_ns()
    for data in reqs:
        parser.feed(data)
        parser.next_command()
    return (time.process_time_ns() - started) / len(reqs)


def _sids(kind: str) -> list[int]:
    """The sessions ``kind``'s entries take turns on."""
    return [SID + i for i in range(SESSIONS if kind == MANY else 1)]


def entries(kind: str, n: int) -> list[bytes]:
    stamp = 1_700_000_000_000
    if kind == "plain":
        return [encode_entry([b"INCR", b"ctr%d" % (i % KEYS)], stamp) for i in range(n)]
    sids = _sids(kind)
    return [encode_entry([b"once", b"%d" % sids[i % len(sids)], b"%d" % (i // len(sids) + 1),
                          b"INCR", b"ctr%d" % (i % KEYS)], stamp) for i in range(n)]


def apply(kind: str, data: list[bytes]) -> float:
    kv = KVStateMachine()
    for sid in _sids(kind):
        kv.apply(encode_entry([b"session_open", b"300000", b"%d" % sid], 1_700_000_000_000))
    started = time.process_time_ns()
    for entry in data:
        kv.apply(entry)
    return (time.process_time_ns() - started) / len(data)


async def end_to_end(node: Node, reqs: list[bytes], conn: Connection) -> float:
    parser = CommandParser()
    inflight: collections.deque[Pending] = collections.deque()
    started = time.process_time_ns()
    for data in reqs:
        parser.feed(data)
        args = parser.next_command()
        assert args is not None
        inflight.append(execute(node, conn, args))
        if len(inflight) >= WINDOW:
            encode_reply(await inflight.popleft().wait())
    while inflight:
        encode_reply(await inflight.popleft().wait())
    return (time.process_time_ns() - started) / len(reqs)


class OnceRequests:
    """``RAFT ONCE sid seq INCR k`` with fresh sequence numbers on every call: a repeated
    seq would answer the recorded reply without applying, cheaper than a client's command."""

    def __init__(self, sid: int) -> None:
        self.sid = b"%d" % sid
        self.seq = 0

    def __call__(self, n: int) -> list[bytes]:
        first, self.seq = self.seq + 1, self.seq + n
        return [encode_command(b"RAFT", b"ONCE", self.sid, b"%d" % (first + i), b"INCR",
                               b"ctr%d" % (i % KEYS)) for i in range(n)]


class TakingTurns:
    """``OnceRequests`` of several sessions, one command of each in turn."""

    def __init__(self, sids: list[int]) -> None:
        self.sessions = [OnceRequests(sid) for sid in sids]

    def __call__(self, n: int) -> list[bytes]:
        per = -(-n // len(self.sessions))
        batches = [make(per) for make in self.sessions]
        return [batch[i] for i in range(per) for batch in batches][:n]


async def sessions_end_to_end(work: Path, n: int, repeats: int) -> dict[str, float]:
    peer, client = free_ports(2)
    settings = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client}",
                            peer_addr=f"127.0.0.1:{peer}", cluster={1: f"127.0.0.1:{peer}"},
                            data_dir=str(work), fsync="never", snapshot_entries=0)
    node = Node(settings, admin=Pending.of)
    results: dict[str, list[float]] = {"plain": [], "once": [], MANY: []}
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, ClientServer(node)))
        with trio.fail_after(30):
            while node.core.role is not Role.LEADER:
                await node.driver.role_changed.wait()
        conn = Connection(id=1, addr="bench", user="default")
        sid = await execute(node, conn, [b"RAFT", b"SESSION", b"OPEN"]).wait()
        assert isinstance(sid, int), sid
        sids = [sid]
        for _ in range(SESSIONS - 1):
            sids.append(await execute(node, conn, [b"RAFT", b"SESSION", b"OPEN"]).wait())
        make = {"plain": partial(requests, "plain"), "once": OnceRequests(sid),
                MANY: TakingTurns(sids)}
        for kind in results:  # warm up, and check that both kinds succeed
            reqs = make[kind](WINDOW)
            reply = await execute(node, conn, _args(reqs[-1])).wait()
            assert isinstance(reply, int), reply
        for r in range(repeats):
            for kind in (list(results) if r % 2 == 0 else list(results)[::-1]):
                results[kind].append(await end_to_end(node, make[kind](n), conn))
        nursery.cancel_scope.cancel()
    return {k: min(v) for k, v in results.items()}


def _args(data: bytes) -> list[bytes]:
    parser = CommandParser()
    parser.feed(data)
    args = parser.next_command()
    assert args is not None
    return args


def measure(n: int, repeats: int) -> dict[str, dict[str, float]]:
    """Every figure: stage -> kind -> ns per command."""
    figures: dict[str, dict[str, float]] = {}
    figures["metrics: track + reply (per command)"] = interleaved(
        {"off": partial(metrics_track, False, n), "on": partial(metrics_track, True, n)},
        repeats)
    figures["metrics: WAL instruments (per group commit)"] = interleaved(
        {"on": partial(metrics_wal, n)}, repeats)
    reqs = {kind: requests(kind, n) for kind in ("plain", "once")}
    figures["sessions: parse"] = interleaved({k: partial(parse, v) for k, v in reqs.items()},
                                             repeats)
    # The RESP parser on commands without sessions (its gains are every command's).
    others = {"SET k v100": [encode_command(b"SET", b"key:%d" % i, b"v" * 100) for i in range(n)],
              "MSET 8 args": [encode_command(b"MSET", b"a%d" % i, b"1", b"b", b"2", b"c",
                                                  b"3", b"d") for i in range(n)]}
    figures["parse: plain commands"] = interleaved(
        {k: partial(parse, v) for k, v in others.items()}, repeats)
    data = {kind: entries(kind, n) for kind in ("plain", "once", MANY)}
    figures["sessions: apply (each replica)"] = interleaved(
        {k: partial(apply, k, v) for k, v in data.items()}, repeats)
    with tempfile.TemporaryDirectory(prefix="bench-micro-") as work:
        figures["sessions: end to end, 1-node leader, c50"] = trio.run(
            sessions_end_to_end, Path(work), n, repeats)
    return figures


def against(ref: str, n: int, repeats: int, rounds: int) -> None:
    """This tree and git ``ref``'s raftkv/wire, in alternating child processes (A B B A):
    the least of each figure per tree, side by side."""
    got: dict[str, list[dict[str, dict[str, float]]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench-micro-ref-") as tmp:
        tree = export_tree(ref, Path(tmp))
        for r in range(rounds):
            for which in (("before", "after") if r % 2 == 0 else ("after", "before")):
                env = dict(os.environ)
                if which == "before":
                    env["PYTHONPATH"] = str(tree)
                out = subprocess.run([sys.executable, __file__, "--json", "--commands", str(n),
                                      "--repeats", str(repeats)], env=env, check=True,
                                     capture_output=True, text=True).stdout
                got[which].append(json.loads(out.strip().splitlines()[-1]))
    print(f"ns of CPU per command, {ref} (before) against this tree (after), least of "
          f"{rounds} alternating processes x {repeats} runs of {n}:")
    for stage in got["after"][0]:
        for kind in got["after"][0][stage]:
            if kind not in got["before"][0].get(stage, {}):
                continue  # (a kind REF does not measure)
            before = min(f[stage][kind] for f in got["before"])
            after = min(f[stage][kind] for f in got["after"])
            print(f"  {stage + ' ' + kind:<56} {before:8.0f} -> {after:8.0f} "
                  f"({after - before:+.0f} ns, {after / before - 1:+.1%})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--against", metavar="REF", default=None,
                    help="also run git REF's raftkv and wire, alternating, and compare")
    ap.add_argument("--rounds", type=int, default=4, help="processes per tree (--against)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n, repeats = args.commands, args.repeats
    if args.against:
        against(args.against, n, repeats, args.rounds)
        return 0
    figures = measure(n, repeats)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"ns of CPU per command, least of {repeats} interleaved runs of {n}:")
    for stage, kinds in figures.items():
        show(stage, kinds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
