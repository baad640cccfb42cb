"""A campaign of generated hostile scripts: each must end within its budget, the same way
on two replicas. ``python tests/kv/script_campaign.py --count 2000`` prints the slowest
(the README's figure); tests/kv/test_kv_script_campaign.py runs a sample.

A script is a few setup lines (long strings from ARGV, tables of long keys, a metatable
chain) and one to three nested loops over operations chosen among those whose cost grows
with the data: long-string comparison, concatenation, hashing, table keys, string and
table library functions, patterns, coercions, ``redis.call``, metatables, memory growth.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from raftkv.kv import KVStateMachine, encode_entry
from wire.reply import ErrorReply

T0 = 1_700_000_000_000
SIZES = (0, 41, 1000, 1 << 16, 1 << 20, 1 << 23)
COUNTS = ("10", "1000", "1e5", "1e7")

SETUP = [
    "local A, B = ARGV[1], ARGV[2]",
    "local t = {} for j = 1, 64 do t[A .. j] = j end t[A] = 0",
    "local arr = {} for j = 1, 256 do arr[j] = B end",
    "local c = {} for j = 1, 4 do c = setmetatable({}, {__index = c}) end",
    "local s = A",
]
OPS = [
    "local x = A == B", "local x = A ~= B", "local x = A < B", "local x = A >= B",
    "local x = A .. B", "local x = A .. i", "local x = A .. B .. A .. B", "s = s .. A",
    "t[A .. i] = i", "local v = t[B]", "local v = t[A]", "rawset(t, B, i)",
    "local v = rawget(t, B)", "local x = rawequal(A, B)", "local x = string.rep(A, 3)",
    "local x = A:rep(50, B)", "local x = A:upper()", "local x = A:reverse()",
    "local x = A:sub(2)", "local x = string.format('%s%s', A, B)",
    "local x = string.format('%q', A)", "local x = A:gsub('x', 'yy')",
    "local x = A:find('x*y')", "local x = A:find(B, 1, true)", "local x = A:match('(.-)z')",
    "local x = A:gmatch('x')()", "local x = table.concat(arr)", "table.sort(arr)",
    "table.sort(arr, function(p, q) return p < q end)", "for k in pairs(t) do end",
    "for k, v in ipairs(arr) do end", "local x = tostring(A)", "local x = tonumber(A)",
    "pcall(function() return A + 1 end)", "local x = #A", "local x = select('#', unpack(arr))",
    "pcall(string.byte, A, 1, -1)", "redis.call('SET', 'k' .. (i % 10), A)",
    "local x = redis.call('GET', 'k1')", "pcall(redis.call, 'APPEND', 'k2', A)",
    "local x = redis.call('KEYS', '*')", "local x = redis.call('MGET', 'k1', 'k2', 'k3')",
    "local x = c.missing", "c.y = i",
    "local x = setmetatable({}, {__index = function(_, k) return A .. k end}).x",
    "pcall(error, A)", "local x = utf8.len(A)", "local x = string.char(65, 66, 67)",
    "local x = {A, B, A, B}", "local x = {[A] = 1, [B] = 2}",
    "local x = table.unpack(arr)", "table.insert(arr, 1, A)", "table.remove(arr, 1)",
    "local x = string.format('%99d', i)", "arr[#arr + 1] = A .. i",
    "for j = 1, 20 do s = s .. s end",
]


def generate(rng: random.Random) -> tuple[str, bytes, bytes]:
    """One script and its two ARGV strings (equal content, distinct objects in Lua)."""
    size = rng.choice(SIZES)
    lines = [SETUP[0]] + [line for line in SETUP[1:] if rng.random() < 0.6]
    depth = rng.randint(1, 3)
    body = "; ".join(rng.choice(OPS) for _ in range(rng.randint(1, 4)))
    for level in range(depth):
        var = "i" if level == 0 else f"i{level}"
        body = f"for {var} = 1, {rng.choice(COUNTS)} do {body} end"
    if "s = s" in body and "local s" not in " ".join(lines):
        lines.append(SETUP[4])
    for name, line in (("t[", SETUP[1]), ("t,", SETUP[1]), ("(t", SETUP[1]),
                       ("arr", SETUP[2]), ("c.", SETUP[3])):
        if name in body and line not in lines:
            lines.append(line)
    lines.append(body)
    lines.append("return 1")
    return "\n".join(lines), b"x" * size, b"x" * size


def run_one(body: str, a: bytes, b: bytes) -> tuple[float, object, int]:
    """Apply on two replicas; the CPU time of the first (the work: the machine is shared,
    so wall time measures the load), its reply, its charged units."""
    entry = encode_entry([b"EVAL", body.encode(), b"0", a, b], T0)
    one, two = KVStateMachine(), KVStateMachine()
    start = time.process_time()
    reply = one.apply(entry)
    elapsed = time.process_time() - start
    other = two.apply(entry)
    if reply != other or one != two:
        raise AssertionError(f"replicas disagree: {reply!r} / {other!r}\n{body}")
    return elapsed, reply, one._scripting.last_cost


def campaign(count: int, seed: int) -> tuple[float, str, dict[str, int]]:
    rng = random.Random(seed)
    worst, worst_body = 0.0, ""
    outcomes: dict[str, int] = {}
    for _ in range(count):
        body, a, b = generate(rng)
        elapsed, reply, _ = run_one(body, a, b)
        kind = reply.text.split(" (")[0][:50] if isinstance(reply, ErrorReply) else "ok"
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if elapsed > worst:
            worst, worst_body = elapsed, f"{body}  [ARGV {len(a)} bytes]"
    return worst, worst_body, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    worst, body, outcomes = campaign(args.count, args.seed)
    print(f"{args.count} scripts in {time.perf_counter() - start:.0f} s; "
          f"slowest apply {worst:.3f} s of CPU:\n{body}")
    for kind, n in sorted(outcomes.items(), key=lambda x: -x[1]):
        print(f"{n:6d}  {kind}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
