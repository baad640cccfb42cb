"""How long one entry (or one read) with many keys holds the event loop (issue 12): the CPU
of ``KVStateMachine.apply`` / ``read`` per key for MSET, MSETNX, DEL, UNLINK, EXISTS, MGET
and a MULTI/EXEC of SETs, on a state holding ``--state`` keys with the change feed on, as
a node runs. It chose ``--max-keys-per-command``'s default: the largest command must apply
in a few milliseconds on this machine.

Run: .venv/bin/python tests/bench/bench_apply_per_key.py [--keys 1000,10000,100000]
                                                          [--state 100000] [--rounds 5]

CPU time (``time.process_time``), median of ``--rounds``, in this process; absolute
figures move with the machine's load, the per-key ratios between commands much less.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import load_line

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.feed import ChangeFeed

T0 = 1_700_000_000_000


def _keys(tag: str, n: int) -> list[bytes]:
    return [b"%s:%07d" % (tag.encode(), i) for i in range(n)]


def _writes(n: int, tag: str) -> dict[str, list[bytes]]:
    """Each write command of ``n`` keys, as its log entry's args."""
    keys = _keys(tag, n)
    pairs = [a for k in keys for a in (k, b"v")]
    fresh = [a for k in _keys(tag + "x", n) for a in (k, b"v")]
    return {
        "MSET (new keys)": [b"MSET", *pairs],
        "MSET (overwrite)": [b"MSET", *pairs],
        "MSETNX (new keys)": [b"MSETNX", *fresh],
        "EXEC of SETs": [b"EXEC", encode_exec([], [[b"SET", k, b"v"] for k in keys])],
        "DEL": [b"DEL", *keys],
        "UNLINK (missing)": [b"UNLINK", *keys],
    }


def run(n: int, state: int, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {}
    for r in range(rounds):
        kv = KVStateMachine(feed=ChangeFeed())
        index = 1
        if state:
            kv.apply(encode_entry([b"MSET", *[a for k in _keys("base", state)
                                               for a in (k, b"x")]], T0), index=index)
        for name, args in _writes(n, f"r{r}").items():
            entry = encode_entry(args, T0)
            index += 1
            began = time.process_time()
            kv.apply(entry, index=index)
            times.setdefault(name, []).append(time.process_time() - began)
            if name == "MSET (overwrite)":  # the reads, on the keys just written
                keys = args[1::2]
                for read in ("MGET", "EXISTS"):
                    began = time.process_time()
                    kv.read([read.encode(), *keys], now=T0)
                    times.setdefault(read, []).append(time.process_time() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", default="1000,10000,100000")
    ap.add_argument("--state", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(load_line())
    sizes = [int(k) for k in args.keys.split(",")]
    results = {n: run(n, args.state, args.rounds) for n in sizes}
    names = list(results[sizes[0]])
    print(f"CPU of one apply/read, median of {args.rounds}, state {args.state:,} keys "
          "(ms; us per key in brackets)")
    print(f"{'command':<20}" + "".join(f"{n:>22,}" for n in sizes))
    for name in names:
        cells = "".join(f"{results[n][name] * 1e3:>12.2f} ({results[n][name] / n * 1e6:5.2f} us)"
                        for n in sizes)
        print(f"{name:<20}{cells}")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
