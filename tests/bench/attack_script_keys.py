"""A script's ``redis.call`` of many keys against its instruction budget (attack11).

Run: .venv/bin/python tests/bench/attack_script_keys.py [--keys 100000] [--rounds 3]

--max-keys-per-command (1,024) bounds a command's keys before it is proposed, and a
script's declared keys, but not the keys a script builds and passes to ``redis.call``:
those are bounded by the budget alone (raftkv/kv/scripts.py), which charges ``CALL_COST``
plus ``ITEM_COST`` (50 units) an argument, so one call may name ~190,000 keys. Printed, in
this process, on a state of 2 x ``--keys`` keys with the change feed on (CPU time of one
``apply``, median of ``--rounds``): a budget-spending loop (10M units), a plain ``DEL`` of
``--keys`` keys (which the key cap refuses before proposing), the same ``DEL`` from a
script (``unpack`` of a table it built), the script building that table alone, and a
script whose second ``DEL`` goes over the budget (its first is undone).

With ``--budget UNITS`` (a tree with the feature gate, raftkv/kv/features.py) every
script case runs a second time in the level-1 form the leader writes once every member
reads it (``budget UNITS ...``: that budget and the per-key charges), and three more
budget-spending scripts are timed: a GET loop, a SET loop and a table build alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import load_line

from raftkv.kv import KVStateMachine, encode_entry

T0 = 1_700_000_000_000
SPEND = b"local x = 0 for i = 1, 100000000 do x = x + 1 end return x"
BUILD = b"local t = {} for i = 1, tonumber(ARGV[1]) do t[i] = 'key:' .. i end "


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=0,
                    help="also the budget form with this many units")
    a = ap.parse_args()
    print(load_line())
    n = b"%d" % a.keys
    fill = [b"MSET", *(x for i in range(2 * a.keys) for x in (b"key:%d" % i, b"v"))]
    kv = KVStateMachine()
    kv.apply(encode_entry(fill, T0), index=1)
    cases = {
        "budget-spending loop": [b"EVAL", SPEND, b"0"],
        f"plain DEL of {a.keys:,} keys": [b"DEL", *(b"key:%d" % i for i in range(1, a.keys + 1))],
        f"script DEL of {a.keys:,} keys": [
            b"EVAL", BUILD + b"return redis.call('DEL', unpack(t))", b"0", n],
        "script: the table alone": [b"EVAL", BUILD + b"return #t", b"0", n],
        "script: 2 DELs, over budget": [
            b"EVAL", BUILD + b"redis.call('DEL', unpack(t)) return redis.call('DEL', unpack(t))",
            b"0", n],
    }
    forms = {name: (args, 0) for name, args in cases.items()}
    if a.budget:
        from raftkv.kv.features import wrap
        loops = {
            "GET loop": b"for i = 1, 100000000 do redis.call('GET', 'key:1') end",
            "SET loop": b"for i = 1, 100000000 do redis.call('SET', 'key:1', 'v') end",
            "table build, no end": b"local t = {} for i = 1, 100000000 do t[i] = 'k' .. i end",
        }
        extra = {name: [b"EVAL", body, b"0"] for name, body in loops.items()}
        for name, args in [*cases.items(), *extra.items()]:
            if args[0] == b"EVAL":
                forms[f"[{a.budget}] {name}"] = (wrap(args, a.budget), 1)
    cases = {name: args for name, (args, _) in forms.items()}
    took: dict[str, list[float]] = {name: [] for name in cases}
    index = 1
    for _ in range(a.rounds):
        for name, args in cases.items():
            index += 1
            entry = encode_entry(args, T0, forms[name][1])
            t = time.process_time()
            reply = kv.apply(entry, index=index)
            took[name].append(time.process_time() - t)
            if isinstance(reply, int) and reply > 1:  # keys deleted: put them back
                index += 1
                kv.apply(encode_entry(fill, T0), index=index)
            took[name + " reply"] = [str(reply)[:60]]  # type: ignore[list-item]
    for name in cases:
        print(f"  {name:32s} {statistics.median(took[name]) * 1000:7.0f} ms  "
              f"-> {took[name + ' reply'][0]}")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
