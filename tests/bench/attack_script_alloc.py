"""What a script's allocation costs, charged or not (attack16, issue 12).

Run: .venv/bin/python tests/bench/attack_script_alloc.py [--rounds 5] [--iters 20000]

Per workload, in this process, CPU time of one ``apply`` of a level-1 ``budget`` entry
(median of ``--rounds``, alternating A B B A): A with allocation not charged (the
collector running, as before), B with ``scripts.ALLOC_COST`` units per KiB. Part 1 runs
``--iters`` iterations within MAX_BUDGET and prints the units spent A and B (B - A ~ KiB
allocated x the charge) and the CPU beyond the instructions' own; part 2 runs each
workload until the default 1,000,000-unit budget trips.
"""

from __future__ import annotations

import argparse
import statistics
import time

import attrs

from raftkv.kv import KVStateMachine, encode_entry, machine, scripts
from raftkv.kv.features import MAX_BUDGET, wrap

T0 = 1_700_000_000_000
NILS = ", ".join(["nil"] * 250)
WORK = {
    "plain loop": "local x = i + 1",
    "constructor": "local t = {" + NILS + ", i}",
    "closures": "local f = function() return i end",
    "string keys": "local t = {a = i, b = i, c = i, d = i, e = i, f = i, g = i, h = i}",
    "concat": "local s = 'k' .. i",
}


def body(inner: str, iters: int) -> bytes:
    return f"local n = 0 for i = 1, {iters} do {inner} n = n + 1 end return n".encode()


def one(code: bytes, units: int, alloc: int) -> tuple[float, int, str]:
    machine.KEYED = attrs.evolve(scripts.KEYED, alloc=alloc)
    kv = KVStateMachine()
    kv.keep_members((1, 2, 3))
    entry = encode_entry(wrap([b"EVAL", code, b"0"], units), T0, 1)
    t = time.process_time()
    reply = kv.apply(entry)
    cpu = time.process_time() - t
    return cpu * 1000, kv._scripting.last_cost, repr(reply)[:60]


def paired(code: bytes, units: int, rounds: int) -> dict[str, list]:
    out: dict[str, list] = {"A": [], "B": []}
    for r in range(rounds):
        for side in ("AB" if r % 2 == 0 else "BA"):
            out[side].append(one(code, units, 0 if side == "A" else scripts.ALLOC_COST))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20_000)
    args = ap.parse_args()
    print(f"ALLOC_COST {scripts.ALLOC_COST} units/KiB")
    print("part 1: finite loops within MAX_BUDGET")
    spend_ns = None
    for name, inner in WORK.items():
        res = paired(body(inner, args.iters), MAX_BUDGET, args.rounds)
        a_ms = statistics.median(x[0] for x in res["A"])
        b_ms = statistics.median(x[0] for x in res["B"])
        a_units, b_units = res["A"][0][1], res["B"][0][1]
        kib = (b_units - a_units) / scripts.ALLOC_COST if scripts.ALLOC_COST else 0
        ns_unit = a_ms * 1e6 / a_units
        if spend_ns is None:
            spend_ns = ns_unit
        extra_ns = a_ms * 1e6 - a_units * spend_ns
        per_kib = extra_ns / kib if kib > 1 else float("nan")
        print(f"  {name:12s} A {a_ms:7.2f} ms {a_units:9d} u  B {b_ms:7.2f} ms {b_units:9d} u  "
              f"~{kib:9.0f} KiB  {ns_unit:5.1f} ns/u  beyond instr {per_kib:6.0f} ns/KiB "
              f"(~{per_kib / spend_ns:4.0f} u)  replies equal "
              f"{len({x[2] for x in res['A'] + res['B']}) == 1}")
    print("part 2: until the 1,000,000-unit default trips")
    for name, inner in WORK.items():
        res = paired(body(inner, 1_000_000_000), 1_000_000, args.rounds)
        a = statistics.median(x[0] for x in res["A"])
        b = statistics.median(x[0] for x in res["B"])
        ratios = sorted(y[0] / x[0] for x, y in zip(res["A"], res["B"], strict=True))
        mid = statistics.median(ratios)
        print(f"  {name:12s} A {a:7.2f} ms  B {b:7.2f} ms  B/A median {mid:.3f}"
              f" [{ratios[0]:.3f}..{ratios[-1]:.3f}]  B: {res['B'][0][2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
