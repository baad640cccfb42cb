"""EVAL and friends: Lua scripts run by every replica when their entry applies.

A script is replicated as its invocation (body or sha, keys, arguments), so it must do the
same thing on every replica. Each run gets:

* a **fresh Lua 5.4 runtime** (lupa), so nothing carries over between calls, with a
  whitelisted environment: no ``os``, ``io``, ``require``, ``load``, ``debug``,
  ``collectgarbage``, ``math.random``, ``next``; ``pairs`` walks keys in sorted order
  (Lua's string hash is seeded per runtime, so its own order differs between replicas);
  ``tostring`` and ``string.format`` print no addresses.
* ``redis.call``/``redis.pcall`` over RaftKV's own commands, run at the script's entry's
  time (time stands still inside a script, as in Redis); ``redis.status_reply``,
  ``redis.error_reply``, ``redis.log`` (ignored) and ``KEYS``/``ARGV``.
* a **deterministic instruction budget**: a count hook fires every ``HOOK_STEP`` VM
  instructions; after ``INSTRUCTION_BUDGET`` instructions the script fails with the same
  error on every replica (the hook then fires at every instruction, so ``pcall`` cannot
  swallow it). Writes the script made before failing stay, as in Redis.
* a **memory cap** (``MAX_MEMORY``), through lupa's allocator: past it the script fails.

Both limits are part of the replicated semantics: every replica must run the same lupa and
Lua build with the same limits, like the rest of the code.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from lupa import lua54

from wire.reply import ErrorReply, SimpleString

from . import syntax
from .errors import NOSCRIPT

if TYPE_CHECKING:
    from .commands import Reply
    from .machine import KVStateMachine

INSTRUCTION_BUDGET = 10_000_000
HOOK_STEP = 10_000
MAX_MEMORY = 64 * 1024 * 1024
MAX_REPLY_DEPTH = 64
BUDGET_ERROR = f"ERR Script exceeded the instruction budget ({INSTRUCTION_BUDGET} instructions)"

# Runs first in each fresh runtime: builds the sandbox and returns the function that runs
# one script in it. Receives the Python bridge, the budget in hook steps and the step.
_PRELUDE = r"""
local bridge, budget, step = ...
local sethook, sort, format, floor = debug.sethook, table.sort, string.format, math.floor
local mtype, select, type, error, raw_tostring = math.type, select, type, error, tostring
local getmetatable, setmetatable, load, next = getmetatable, setmetatable, load, next

local function key_lt(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == 'number' or ta == 'string' then return a < b end
  if ta == 'boolean' then return (not a) and b end
  error('pairs() over a table with table or function keys is not deterministic', 3)
end
local function sorted_pairs(t)
  local keys = {}
  for k in next, t do keys[#keys + 1] = k end
  sort(keys, key_lt)
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, t[k] end
  end, t, nil
end
local function safe_tostring(v)
  local t = type(v)
  if t == 'table' or t == 'function' or t == 'thread' or t == 'userdata' then
    local mt = getmetatable(v)
    if type(mt) == 'table' and mt.__tostring then return raw_tostring(v) end
    return t
  end
  return raw_tostring(v)
end
local safe_string = {}
for k, v in pairs(string) do safe_string[k] = v end
safe_string.format = function(fmt, ...)
  if type(fmt) == 'string' and fmt:find('%%p') then error("format '%p' is not allowed", 2) end
  local n = select('#', ...)
  local args = {...}
  for i = 1, n do
    local t = type(args[i])
    if t ~= 'string' and t ~= 'number' then args[i] = safe_tostring(args[i]) end
  end
  return format(fmt, table.unpack(args, 1, n))
end
getmetatable('').__index = safe_string
local safe_math = {}
for k, v in pairs(math) do safe_math[k] = v end
safe_math.random, safe_math.randomseed = nil, nil
local safe_table = {}
for k, v in pairs(table) do safe_table[k] = v end
local safe_utf8 = {}
for k, v in pairs(utf8) do safe_utf8[k] = v end

local function to_arg(v)
  local t = type(v)
  if t == 'string' then return v end
  if t == 'number' then
    if mtype(v) == 'integer' then return format('%d', v) end
    return format('%.17g', v)
  end
  error({err = 'ERR Lua redis lib command arguments must be strings or integers'}, 3)
end
local function run_command(protected, ...)
  local n = select('#', ...)
  if n == 0 then
    error({err = 'ERR Please specify at least one argument for this redis lib call'}, 3)
  end
  local args = {}
  for i = 1, n do args[i] = to_arg((select(i, ...))) end
  local reply = bridge(args)
  if not protected and type(reply) == 'table' and reply.err ~= nil then error(reply, 0) end
  return reply
end
local redis = {
  call = function(...) return run_command(false, ...) end,
  pcall = function(...) return run_command(true, ...) end,
  status_reply = function(s) return {ok = s} end,
  error_reply = function(s) return {err = s} end,
  log = function() end,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
}

return function(body, keys, argv)
  local env = {
    assert = assert, error = error, ipairs = ipairs, pairs = sorted_pairs, pcall = pcall,
    rawequal = rawequal, rawget = rawget, rawlen = rawlen, rawset = rawset, select = select,
    setmetatable = setmetatable, getmetatable = getmetatable, tonumber = tonumber,
    tostring = safe_tostring, type = type, xpcall = xpcall, unpack = table.unpack,
    string = safe_string, table = safe_table, math = safe_math, utf8 = safe_utf8,
    redis = redis, KEYS = keys, ARGV = argv, _VERSION = _VERSION,
  }
  local fn, err = load(body, '@user_script', 't', env)
  if not fn then return false, 'ERR Error compiling script (new function): ' .. err end
  if keys == nil then return true, nil end  -- a compile check only
  local count = 0
  local function over() error(BUDGET, 0) end
  sethook(function()
    count = count + 1
    if count >= budget then sethook(over, '', 1); over() end
  end, '', step)
  local result = table.pack(pcall(fn))
  sethook()
  return result[1], result[2]
end
"""


def script_sha(body: bytes) -> bytes:
    """The SHA1 hex digest SCRIPT LOAD answers and EVALSHA takes (lower case)."""
    return hashlib.sha1(body).hexdigest().encode()


class _Run:
    """One script execution: its runtime and the state machine's bridge."""

    def __init__(self, machine: KVStateMachine, read_only: bool) -> None:
        self.machine = machine
        self.read_only = read_only
        self.lua = lua54.LuaRuntime(
            register_eval=False, register_builtins=False, encoding=None,
            max_memory=MAX_MEMORY, unpack_returned_tuples=True,
            attribute_filter=_deny_attributes,
        )
        prelude = _PRELUDE.replace("error(BUDGET, 0)", "error(" + _lua_quote(BUDGET_ERROR) + ", 0)")
        self.runner = self.lua.execute(prelude, self._bridge, INSTRUCTION_BUDGET // HOOK_STEP,
                                       HOOK_STEP)
        self.lua.execute("python = nil")

    def _bridge(self, lua_args: Any) -> Any:
        args = [lua_args[i] for i in range(1, len(lua_args) + 1)]
        reply = self.machine.call_from_script(args, self.read_only)
        return self._to_lua(reply, 0)

    def _to_lua(self, reply: Reply, depth: int) -> Any:
        if isinstance(reply, ErrorReply):
            return self.lua.table_from({b"err": reply.text.encode()})
        if isinstance(reply, SimpleString):
            return self.lua.table_from({b"ok": reply.text.encode()})
        if reply is None:
            return False
        if isinstance(reply, list) and depth < MAX_REPLY_DEPTH:
            return self.lua.table_from([self._to_lua(item, depth + 1) for item in reply])
        if isinstance(reply, (bytes, int)):
            return reply
        return False


def _deny_attributes(obj: Any, name: Any, is_setting: bool) -> Any:
    raise AttributeError("Python attributes are not reachable from scripts")


def _lua_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _as_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


def _error_reply(raw: Any) -> ErrorReply:
    text = _as_text(raw).split("\nstack traceback:", 1)[0]
    if BUDGET_ERROR in text:
        return ErrorReply(BUDGET_ERROR)
    text = text.replace("\r", " ").replace("\n", " ")
    code = text.split(" ", 1)[0]
    if not code or not code.isupper():
        text = "ERR " + text
    return ErrorReply(text)


def to_reply(value: Any, depth: int = 0) -> Reply:
    """A Lua value as a reply, by Redis's conversion rules (numbers truncate to integers,
    true is 1, false and nil are null, ``{ok=}`` a status, ``{err=}`` an error, a table an
    array up to its first nil)."""
    if value is None or value is False:
        return None
    if value is True:
        return 1
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, bytes):
        return value
    if lua54.lua_type(value) != "table" or depth >= MAX_REPLY_DEPTH:
        return None
    err = value[b"err"]
    if isinstance(err, bytes):
        return _error_reply(err)
    ok = value[b"ok"]
    if isinstance(ok, bytes):
        return SimpleString(_as_text(ok).replace("\r", " ").replace("\n", " "))
    items: list[Reply] = []
    i = 1
    while (item := value[i]) is not None:
        items.append(to_reply(item, depth + 1))
        i += 1
    return items


class ScriptRunner:
    """Runs EVAL/EVALSHA/EVAL_RO/EVALSHA_RO and checks SCRIPT LOAD bodies."""

    def __init__(self, machine: KVStateMachine) -> None:
        self._machine = machine

    def compile_error(self, body: bytes) -> ErrorReply | None:
        """The compile error of ``body``, or None if it is valid Lua."""
        try:
            ok, message = _Run(self._machine, True).runner(body, None, None)
        except lua54.LuaError as exc:
            return _error_reply(exc.args[0] if exc.args else "script failed")
        return None if ok else _error_reply(message)

    def eval(self, args: list[bytes], *, body: bytes | None, read_only: bool) -> Reply:
        """Run a script invocation (``args`` as the client sent them)."""
        numkeys = syntax.parse_numkeys(args)
        if isinstance(numkeys, ErrorReply):
            return numkeys
        machine = self._machine
        if body is None:
            body = machine.script_body(args[1])
            if body is None:
                return NOSCRIPT
        elif not read_only:
            machine.remember_script(body)
        keys, argv = args[3 : 3 + numkeys], args[3 + numkeys :]
        try:
            run = _Run(machine, read_only)
            ok, result = run.runner(body, run.lua.table_from(keys), run.lua.table_from(argv))
        except lua54.LuaMemoryError:
            return ErrorReply("ERR Script exceeded the memory limit")
        except lua54.LuaError as exc:
            return _error_reply(exc.args[0] if exc.args else "script failed")
        if not ok:
            if lua54.lua_type(result) == "table":
                reply = to_reply(result)
                if isinstance(reply, ErrorReply):
                    return reply
            if isinstance(result, bytes) and result.startswith(b"ERR Error compiling"):
                return _error_reply(result)
            if isinstance(result, bytes) and result == BUDGET_ERROR.encode():
                return ErrorReply(BUDGET_ERROR)
            if lua54.lua_type(result) is None and result is not None and not isinstance(
                    result, bytes):
                return _error_reply(f"Error running script: {result!r}")
            return _error_reply(b"ERR Error running script: " + (
                result if isinstance(result, bytes) else b"not enough memory"
                if result is None else str(result).encode()))
        return to_reply(result)
