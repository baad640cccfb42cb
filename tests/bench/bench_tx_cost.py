"""How long the largest allowed single entry holds every replica's apply loop (issue 12,
``harden11``): the CPU of ``KVStateMachine.apply`` for the worst ``MULTI``/``EXEC`` that
main lets a client propose and the worst one ``raftkv/kv/entry_cost.py`` lets through
(default flags: 8 MiB max-request-bytes, 1,024 max-keys-per-command), and for scripts that
spend the whole instruction budget in different ways.

Run: .venv/bin/python tests/bench/bench_tx_cost.py [--rounds 5] [--state 100000]

Each row is run ``--rounds`` times, the cases interleaved (each round runs every case
once), in this process; CPU time (``time.process_time``), median and range. The entries'
apply code is the same on main and on the branch: "main" rows are what main would propose.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from common import load_line

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.commands import MAX_VALUE_LEN
from raftkv.kv.entry_cost import refusal
from raftkv.kv.feed import ChangeFeed

T0 = 1_700_000_000_000
MIB = 1024 * 1024
COPY_LIMIT = 2 * 8 * MIB  # 2 x the default --max-request-bytes
WALK_LIMIT = 1024  # the default --max-keys-per-command


def _exec(*commands: list[bytes]) -> list[bytes]:
    return [b"EXEC", encode_exec([], list(commands))]


def _state(keys: int, big: bool, name_len: int = 0) -> KVStateMachine:
    kv = KVStateMachine(feed=ChangeFeed())
    if name_len:  # three keys with long names
        kv.apply(encode_entry([b"MSET", *[a for i in range(3)
                                          for a in (b"%d" % i + b"a" * name_len, b"v")]], T0))
    elif keys < 0:  # keys with a deadline (far away)
        kv.apply(encode_entry(_exec(*[[b"SETEX", b"key:%07d" % i, b"100000", b"v"]
                                      for i in range(-keys)]), T0))
    elif keys:
        kv.apply(encode_entry([b"MSET", *[a for i in range(keys)
                                          for a in (b"key:%07d" % i, b"v")]], T0))
    if big:
        kv.apply(encode_entry([b"SET", b"big", b"x" * (MAX_VALUE_LEN - 1024)], T0))
    return kv


def _script(body: str) -> list[bytes]:
    return [b"EVAL", body.encode(), b"0"]


# name -> (keys in the state (negative: with deadlines), an 8 MiB value in it, the entry's
# args); an EXEC with ``SCAN`` (upper case) runs on a replica that has SCAN's order built
# (and, for the pattern rows, the length of three keys' names that make the state)
CASES: dict[str, Callable[[int], tuple]] = {
    "main: EXEC of 32 APPENDs to 8 MiB (256 MiB)":
        lambda s: (0, True, _exec(*[[b"APPEND", b"big", b"y"]] * 32)),
    "branch: EXEC of 2 APPENDs to 8 MiB (16 MiB)":
        lambda s: (0, True, _exec(*[[b"APPEND", b"big", b"y"]] * 2)),
    "main: EXEC of 10 KEYS * (state keys)":
        lambda s: (s, False, _exec(*[[b"KEYS", b"*"]] * 10)),
    "main: EXEC of SCAN 0 COUNT 10 (order built)":
        lambda s: (s, False, _exec([b"SCAN", b"0", b"COUNT", b"10"])),
    "main: EXEC of SCAN 0 COUNT 10 (no order yet)":
        lambda s: (s, False, _exec([b"scan", b"0", b"COUNT", b"10"])),
    "main: EXEC of 1,024 DBSIZE (state keys with TTL)":
        lambda s: (-s, False, _exec(*[[b"DBSIZE"]] * 1024)),
    "branch: EXEC of KEYS * (1,024 keys)":
        lambda s: (WALK_LIMIT, False, _exec([b"KEYS", b"*"])),
    "branch: EXEC of SCAN 0 (1,024 keys, order built)":
        lambda s: (WALK_LIMIT, False, _exec([b"SCAN", b"0"])),
    "main: EXEC of KEYS *a?b* (3 keys of 1 MiB)":
        lambda s: (0, False, _exec([b"KEYS", b"*a?b*"]), 1 << 20),
    "branch: EXEC of KEYS *a?b* (3 keys of 16 KiB)":
        lambda s: (0, False, _exec([b"KEYS", b"*a?b*"]), 1 << 14),
    "script: empty loop to the budget":
        lambda s: (0, False, _script("local i = 0 while true do i = i + 1 end")),
    "script: redis.call SET loop to the budget":
        lambda s: (0, False, _script("while true do redis.call('SET', 'k', 'v') end")),
    "script: string.rep 1 MiB loop to the budget":
        lambda s: (0, False, _script("while true do local x = string.rep('x', 1048576) end")),
    "script: APPEND to 8 MiB loop to the budget":
        lambda s: (0, True, _script("while true do redis.call('APPEND', 'big', 'y') end")),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--state", type=int, default=100_000)
    args = ap.parse_args()
    print(load_line())
    times: dict[str, list[float]] = {name: [] for name in CASES}
    verdicts: dict[str, str] = {}
    for _ in range(args.rounds):
        for name, case in CASES.items():
            keys, big, entry, *name_len = case(args.state)
            kv = _state(keys, big, *name_len)
            if len(entry) == 2 and b"SCAN" in entry[1]:
                kv.apply(encode_entry([b"SCAN", b"0"], T0))  # (a replica that has the order)
            error = refusal(kv, entry, copy_limit=COPY_LIMIT, walk_limit=WALK_LIMIT)
            verdicts[name] = "refused" if error is not None else "allowed"
            data = encode_entry(entry, T0)
            began = time.process_time()
            kv.apply(data)
            times[name].append(time.process_time() - began)
    print(f"CPU of one apply, ms: median [min-max] of {args.rounds}; state {args.state:,} keys "
          "for main's KEYS/SCAN rows; 'branch check' is entry_cost's verdict")
    for name, values in times.items():
        ms = [v * 1e3 for v in values]
        print(f"{name:<52}{statistics.median(ms):>9.1f} [{min(ms):.1f}-{max(ms):.1f}]"
              f"   branch check: {verdicts[name]}")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
