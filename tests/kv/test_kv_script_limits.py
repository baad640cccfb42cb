"""The script sandbox's bounds: work outside the VM is charged, finalizers and weak tables
are refused, the reply is bounded, the runtime is freed when the script returns, and the
Lua port of the pattern functions answers what lstrlib's C functions answer."""

from __future__ import annotations

import gc
import itertools

import pytest
from lupa import lua54

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.lua_patterns import PATTERNS
from raftkv.kv.scripts import BUDGET_ERROR
from wire.reply import ErrorReply

T0 = 1_700_000_000_000


def ev(kv: KVStateMachine, body: str, *args: bytes):
    return kv.apply(encode_entry([b"EVAL", body.encode(), b"0", *args], T0))


def test_a_backtracking_pattern_hits_the_budget() -> None:
    """lstrlib's matcher runs outside the VM (this took hours in C); the port is counted."""
    kv = KVStateMachine()
    assert ev(kv, "local s = string.rep('a', 300) return s:find('.-.-.-.-.-b')") == ErrorReply(
        BUDGET_ERROR)


@pytest.mark.parametrize("body", [
    "return string.rep('x', 2^40)",                           # charged before allocating
    "local t = {} table.move(t, 1, 2^40, 2) return 1",           # a C loop of 2^40
    "local t = setmetatable({}, {__len = function() return 2^40 end}) "
    "table.insert(t, 1, 'x') return 1",                          # C shifts #t elements
    "local s = string.rep('x', 1e6) for i = 1, 1e6 do s:upper() end return 1",
    "local s = string.rep('x', 1e6) for i = 1, 1e6 do local n = tonumber(s) end return 1",
    "local s = string.rep('x', 1e6) for i = 1, 1e6 do pcall(function() return s + 1 end) end",
])
def test_work_in_c_functions_counts_against_the_budget(body: str) -> None:
    assert ev(KVStateMachine(), body) == ErrorReply(BUDGET_ERROR)


def test_redis_call_work_is_charged_before_it_is_done() -> None:
    """KEYS walks every key: 100 calls over 1,000 keys cost 30M instructions; the call that
    would cross the budget is refused before it runs."""
    kv = KVStateMachine()
    kv.apply(encode_entry([b"MSET", *itertools.chain.from_iterable(
        (b"k%d" % i, b"v") for i in range(1000))], T0))
    reply = ev(kv, "local n = 0 for i = 1, 100 do n = n + #redis.call('KEYS', '*') end "
               "return n")
    assert reply == ErrorReply(BUDGET_ERROR)
    assert ev(kv, "return #redis.call('KEYS', '*')") == 1000


def test_a_loop_of_redis_calls_is_bounded() -> None:
    kv = KVStateMachine()
    assert ev(kv, "for i = 1, 1e6 do redis.call('INCR', 'n') end") == ErrorReply(BUDGET_ERROR)
    assert kv.read([b"GET", b"n"]) is None  # the failed script's INCRs are undone
    assert ev(kv, "for i = 1, 5000 do redis.call('INCR', 'n') end return 1") == 1
    assert kv._scripting.last_cost > 5000 * 1000  # ~1,000 instructions each


@pytest.mark.parametrize(("body", "error"), [
    ("setmetatable({}, {__gc = function() end}) return 1", "__gc"),
    ("setmetatable({}, {__mode = 'k'}) return 1", "__mode"),
])
def test_finalizers_and_weak_tables_are_refused(body: str, error: str) -> None:
    reply = ev(KVStateMachine(), body)
    assert isinstance(reply, ErrorReply) and error in reply.text, reply


def test_a_metatable_is_copied_so_gc_or_mode_cannot_be_added_later() -> None:
    kv = KVStateMachine()
    body = ("local mt = {__index = function() return 'first' end} "
            "local t = setmetatable({}, mt) "
            "mt.__mode = 'k' mt.__index = function() return 'later' end "
            "return {t.x, tostring(getmetatable(t) == mt)}")
    assert ev(kv, body) == [b"first", b"true"]
    # classes still work: __index points at the class table itself
    assert ev(kv, "local C = {} C.__index = C local o = setmetatable({}, C) "
                  "function C.hi() return 'hi' end return o.hi()") == b"hi"
    assert ev(kv, "local t = setmetatable({}, {__metatable = 'locked'}) "
                  "return {getmetatable(t), pcall(setmetatable, t, {})}") == [
        b"locked", None, b"cannot change a protected metatable"]


@pytest.mark.parametrize(("body", "error"), [
    ("local t = {} for i = 1, 4 do t[i] = t end return t", "contains itself"),
    ("local t = {} local cur = t for i = 1, 100 do cur[1] = {} cur = cur[1] end return t",
     "deeper than 64"),
    ("local s = string.rep('x', 2^20) local t = {} for i = 1, 100 do t[i] = s end return t",
     "larger than 67108864 bytes"),  # one string, shared: 100 MiB of reply
    ("local s = {} for i = 1, 20 do s[i] = i end local t = {} "
     "for i = 1, 100000 do t[i] = s end return t", "instruction budget"),  # 2M elements
])
def test_the_reply_is_bounded(body: str, error: str) -> None:
    reply = ev(KVStateMachine(), body)
    assert isinstance(reply, ErrorReply) and error in reply.text, reply


def test_the_reply_uses_raw_access() -> None:
    """A metamethod on the result would run after the script (unbudgeted): Redis reads the
    reply raw, and so do we."""
    body = ("return setmetatable({1, 2}, {__index = function() while true do end end, "
            "__len = function() return 100 end})")
    assert ev(KVStateMachine(), body) == [1, 2]


def test_the_runtime_is_freed_when_the_script_returns() -> None:
    def runtimes() -> int:
        return sum(isinstance(o, lua54.LuaRuntime) for o in gc.get_objects())

    kv = KVStateMachine()
    gc.collect()
    gc.disable()
    try:
        before = runtimes()
        for _ in range(5):
            ev(kv, "return redis.call('SET', 'k', 'v')")
            ev(kv, "while true do end")
            ev(kv, "error('x')")
        assert runtimes() == before
    finally:
        gc.enable()


def test_character_classes_are_ascii_whatever_the_locale() -> None:
    kv = KVStateMachine()
    assert ev(kv, "return {string.find('\\233x', '%a'), string.find('\\233', '%W')}") == [
        2, 1, 1]  # (the first find is cut to one value by the table constructor)


SUBJECTS = ["", "hello world", "  key:123:abc  ", "a(b(c)d)e", "THE (quick) fox",
            "aaa", "x=1, y=22, z=333", "\0a\0b", "f(a,b) g(c)", "[[x]]", "a.b-c*d+e?"]
PATTERNS_TRIED = ["", "o", "l+", "l*", "l-", "l?", "^h", "d$", "^$", ".", "%a+", "%d+",
                  "%s*(.-)%s*$", "(%w+):(%d+)", "%b()", "%f[%w]%w+", "()a()", "(a)%1",
                  "[%w_]+", "[^%s]+", "[a-c]+", "[]]", "%.", "%%", "(%w+)=(%w+)", "^(%w+)",
                  "x*", "[%-+]", "%u", "%l%l", "%p", "%c", "%x+", ".-%)", "$", "a$b",
                  "(h)(e)(l)", "%z", "[%a-]"]


def _differential() -> tuple[list, list]:
    lua = lua54.LuaRuntime(encoding=None, unpack_returned_tuples=True)
    ported = lua.execute(PATTERNS, lua.eval("function() end"), lua.eval("string.find"),
                         lua.eval("tostring"))
    runner = lua.eval("""function(f, s, p, extra)
        local r = table.pack(pcall(f, s, p, extra))
        local out = {}
        for i = 1, r.n do out[i] = tostring(r[i]) end
        return table.concat(out, '|')
    end""")
    gmatch_all = lua.eval("""function(gm, s, p)
        local ok, out = pcall(function()
            local acc = {}
            for a, b in gm(s, p) do acc[#acc + 1] = tostring(a) .. ',' .. tostring(b) end
            return table.concat(acc, ';')
        end)
        return tostring(ok) .. ':' .. tostring(out)
    end""")
    ours, theirs = [], []
    for s, p in itertools.product(SUBJECTS, PATTERNS_TRIED):
        sb, pb = s.encode(), p.encode()
        for name, extra in (("find", None), ("find", 3), ("find", -2), ("match", None),
                            ("gsub", b"<%0>"), ("gsub", b"%1")):
            ours.append((name, s, p, extra, runner(ported[name.encode()], sb, pb, extra)))
            theirs.append((name, s, p, extra,
                           runner(lua.eval(f"string.{name}"), sb, pb, extra)))
        ours.append(("gmatch", s, p, gmatch_all(ported[b"gmatch"], sb, pb)))
        theirs.append(("gmatch", s, p, gmatch_all(lua.eval("string.gmatch"), sb, pb)))
    return ours, theirs


def test_the_pattern_port_answers_what_lstrlib_answers() -> None:
    ours, theirs = _differential()
    differences = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    # error texts: C errors carry no position, nor do ours; compare them too
    assert differences == []
