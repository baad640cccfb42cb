"""A script does the same thing in every runtime: its reply, its writes and the units it
spent (the entry's remaining budget, hence whether a later script of the entry runs).

Each Lua runtime differs from the next in what Lua takes from its process: the string hash
seed (per runtime: the addresses of a new state, the time) and ``clock()``/``time()`` (the C
sort's pivot). Replicas run a script in different runtimes, so every test here runs the
same script in many fresh state machines and wants one outcome (attack8 found each of these
live: three replicas of a 3-node cluster held different values after one ``EVAL``).
"""

from __future__ import annotations

from lupa import lua54

from raftkv.kv import KVStateMachine, encode_entry
from wire.reply import ErrorReply

T0 = 1_700_000_000_000
RUNTIMES = 24


def outcomes(body: str, *argv: bytes) -> set[tuple[object, int]]:
    """The distinct (reply, units spent) of ``body`` over RUNTIMES fresh machines."""
    seen: set[tuple[object, int]] = set()
    spacers = []  # (each run's state at another address: the seed mixes it in, as a
    for _ in range(RUNTIMES):  # replica's process would)
        spacers.append(lua54.LuaRuntime())
        kv = KVStateMachine()
        reply = kv.apply(encode_entry([b"EVAL", body.encode(), b"0", *argv], T0))
        seen.add((repr(reply), kv._scripting.last_cost))
    return seen


# 1,000 records and three distinct keys, the extremes where the median-of-three looks: the
# first partition is unbalanced, so the C sort randomizes its pivot from clock() and time(),
# and the ties end in another order (and after other comparisons) on each run.
TIES = """
local out = {}
for round = 1, 8 do
  local a = {}
  for i = 1, 1000 do a[i] = {k = 1, id = i} end
  a[1].k, a[500].k, a[1000].k = 0, 0, 2
  local calls = 0
  table.sort(a, function(x, y) calls = calls + 1 return x.k < y.k end)
  local ids = {}
  for i = 1, 1000, 37 do ids[#ids + 1] = a[i].id end
  out[round] = calls .. ':' .. table.concat(ids, ',')
end
return out
"""


def test_sort_with_ties_is_the_same_in_every_runtime() -> None:
    assert len(outcomes(TIES)) == 1


def test_sort_keeps_the_c_sorts_order_and_errors() -> None:
    """Without randomization the port compares what ltablib.c compares: the same result,
    the same number of order-function calls, the same error for an inconsistent order."""
    body = """
    local t, calls = {}, 0
    for i = 1, 300 do t[i] = (i * 7919) % 101 end
    table.sort(t, function(a, b) calls = calls + 1 return a < b end)
    local ok, err = pcall(table.sort, {3, 1, 2, 5, 4}, function(a, b) return true end)
    return {calls, table.concat(t, ','), tostring(err)}
    """
    c_sort = lua54.LuaRuntime(encoding=None).eval("function() " + body + " end")()
    expected = [c_sort[1], c_sort[2], c_sort[3]]
    kv = KVStateMachine()
    got = kv.apply(encode_entry([b"EVAL", body.encode(), b"0"], T0))
    assert got == expected
    assert expected[2] == b"invalid order function for sorting"


def test_sort_without_an_order_function() -> None:
    kv = KVStateMachine()
    ev = lambda body: kv.apply(encode_entry([b"EVAL", body.encode(), b"0"], T0))  # noqa: E731
    assert ev("local t = {3, 1, 2} table.sort(t) return t") == [1, 2, 3]
    assert ev("local t = {'b', 'a', 'c'} table.sort(t) return t") == [b"a", b"b", b"c"]
    assert ev("local t = {2.5, 1, 3} table.sort(t) return t") == [1, 2, 3]  # (floats: ints)
    assert ev("local t = {2, 'a'} return {pcall(table.sort, t)}")[1] == (
        b"attempt to compare string with number")
    assert ev("return {pcall(table.sort, {1, 2}, 5)}")[1] == (
        b"bad argument #2 to 'sort' (function expected, got number)")


# Tables with holes, after string keys came and went: Lua's '#' answers a border that
# depends on when the table rehashed, which depends on where its string keys hash.
HOLES = """
local out = {}
local seed = 777
local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648
  return (seed // 65536) % n + 1 end
for trial = 1, 1500 do
  local t = {}
  local ns = rnd(8) * 4
  for i = 1, ns do t['s' .. i] = true end
  for i = 1, ns do if rnd(2) == 1 then t['s' .. i] = nil end end
  for k = 1, rnd(24) do if rnd(5) ~= 1 then t[k] = k end end
  local how = trial % 5
  if how == 0 then out[trial] = #t
  elseif how == 1 then out[trial] = rawlen(t)
  elseif how == 2 then out[trial] = select('#', table.unpack(t))
  elseif how == 3 then table.insert(t, 'x') out[trial] = rawlen(t)
  else out[trial] = #table.concat(t, ',', 30) end
end
return table.concat(out, ',')
"""


def test_length_of_a_table_with_holes_is_the_same_in_every_runtime() -> None:
    assert len(outcomes(HOLES)) == 1


def test_length_keeps_luas_meaning() -> None:
    kv = KVStateMachine()
    ev = lambda body: kv.apply(encode_entry([b"EVAL", body.encode(), b"0"], T0))  # noqa: E731
    assert ev("local t = {} for i = 1, 1000 do t[#t + 1] = i end return #t") == 1000
    assert ev("return {#'abc', #{1, 2, 3}, #{}, #KEYS}") == [3, 3, 0, 0]
    assert ev("return #setmetatable({}, {__len = function() return 42 end})") == 42
    assert ev("local t = {} for i = 0, 62 do t[1 << i] = true end return #t") == 2
    assert ev("local t = {} for i = 1, 70 do t[i] = i end "
              "for i = 0, 62 do t[1 << i] = true end return #t") == 70
    assert ev("local x return #x") == ErrorReply(
        "ERR Error running script: user_script:1: attempt to get length of a nil value")
    assert ev("return rawlen(5)") == ErrorReply(
        "ERR Error running script: bad argument #1 to 'rawlen' (table or string expected)")


# pairs() over 2,000 long string keys: next() hands them out in hash order, so an order
# function sorting them in Lua compared them a different number of times on each replica.
PAIRS = """
local t = {}
for i = 1, 2000 do t[string.rep('k', 60) .. i] = i end
local n, first = 0, nil
for k, v in pairs(t) do n = n + v first = first or k end
return {n, first}
"""


def test_pairs_costs_the_same_in_every_runtime() -> None:
    """The units spent are the entry's: a script near the budget (or a later script of the
    same EXEC) must end the same way on every replica."""
    assert len(outcomes(PAIRS)) == 1


def test_pairs_keeps_its_order_and_refusal() -> None:
    kv = KVStateMachine()
    ev = lambda body: kv.apply(encode_entry([b"EVAL", body.encode(), b"0"], T0))  # noqa: E731
    assert ev("local t = {b = 1, a = 2, [3] = 3, [1.5] = 4, [true] = 5, [false] = 6, "
              "[{}] = 7} local out = {} for k, v in pairs(t) do out[#out + 1] = v end "
              "return out") == [6, 5, 4, 3, 2, 1, 7]
    assert ev("local t = {[{}] = 1, [{}] = 2} for k in pairs(t) do end return 1") == ErrorReply(
        "ERR Error running script: user_script:1: pairs() over a table with table or "
        "function keys is not deterministic")
