"""The Lua side of a script run: the sandbox, the budget and the reply conversion.

``SANDBOX`` runs first in each fresh runtime (see scripts.py), as bytecode compiled once
per process. It receives the Python bridge, the budget, the hook step, the budget error
text, the pattern matcher's and the sort's bytecode (likewise) and the reply limits, and
returns ``run(body, keys, argv)`` and ``finish()``.

Why each piece exists (every one closes a way for a script to behave differently on two
replicas, or to run longer than the budget says):

* **Budget in instruction units.** The count hook adds ``step`` every ``step`` VM
  instructions; C functions and ``redis.call`` add what their work is worth (``charge``),
  computed from their inputs and outputs only, so every replica charges the same. Past the
  budget the hook fires at every instruction, so ``pcall`` cannot swallow the error.
* **C functions that loop** are charged per byte (``BYTES`` bytes per instruction) or
  replaced: pattern matching runs in Lua (lua_patterns.py), ``table.insert/remove/move``
  are Lua loops, ``table.sort`` runs in Lua (lua_sort.py) unless one order is certain,
  ``string.rep`` is charged before it allocates. ``string.pack/unpack/dump`` are not
  offered (Redis's Lua 5.1 has none of them).
* **No finalizers, no weak tables.** ``setmetatable`` refuses ``__gc`` and ``__mode``, and
  installs a copy of the metatable (``getmetatable`` still answers the script's table), so
  neither can be added later. A finalizer runs when the collector decides, which differs
  between replicas (Lua's string hash seed is random per runtime, so table layouts and
  allocation sizes differ), and a weak table empties at such moments.
* **``finish()``** marks the bridge closed and leaves the hook firing at every
  instruction: whatever Lua code could still run while the runtime is torn down fails at
  once instead of running unbounded or calling into the state machine.
* **The reply** is converted here, inside the budget, with raw access (no metamethods, as
  Redis), a depth limit, cycle detection and bounds on items and bytes, into a flat token
  list that Python reads without running any Lua.
"""

SANDBOX = r"""
local bridge, budget, step, budget_error, patterns_src, sort_src, max_depth, max_items,
  max_bytes, per_kib = ...
local gc = collectgarbage  -- the host's only: scripts' environment has no collectgarbage
local sethook, dgetmetatable, dsetmetatable = debug.sethook, debug.getmetatable, debug.setmetatable
local sort, concat, unpack, pack = table.sort, table.concat, table.unpack, table.pack
local format, c_find, sub, rep, byte, char = string.format, string.find, string.sub,
  string.rep, string.byte, string.char
local upper, lower, reverse = string.upper, string.lower, string.reverse
local mtype, log = math.type, math.log
local select, type, error, raw_tostring, raw_tonumber = select, type, error, tostring, tonumber
local rawget, rawlen, next, load, pcall = rawget, rawlen, next, load, pcall
local utf8_len, utf8_offset, utf8_codepoint, utf8_char = utf8.len, utf8.offset,
  utf8.codepoint, utf8.char

local BYTES = 16  -- bytes of C work charged as one instruction

-- The budget -----------------------------------------------------------------------------
local spent = 0
local closed = false
local function over() error(budget_error, 0) end
local function trip()
  sethook(over, '', 1)
  error(budget_error, 0)
end
local function charge(n)
  spent = spent + n
  if spent >= budget then trip() end
end
local function charge_bytes(n) charge(n / BYTES) end
-- Allocation (the budget form only, per_kib > 0): the collector is stopped for the run, so
-- the heap only grows and its growth since the last hook is what the script allocated
-- (a table constructor allocates 4 KiB in ~12 instructions: attack16). The heap's size is
-- the allocator's count of the same allocations in the same order, the same on every
-- replica; the runtime's max_memory then also bounds a script that churns.
-- Garbage is collected here, in the hook, when the heap has doubled since the last
-- collection (and grown by COLLECT_KIB): at the same points on every replica, its cost
-- amortised into the charge per KiB, and churn reuses memory instead of reaching the cap.
-- (No finalizers run: scripts cannot set __gc.)
local COLLECT_KIB = 1024
local heap_kib, live_kib = 0, 0
local function hook()
  spent = spent + step
  if per_kib > 0 then
    local now = gc('count')
    -- (an emergency collection at the memory cap shrinks the heap: never a credit)
    if now > heap_kib then spent = spent + (now - heap_kib) * per_kib end
    heap_kib = now
    if now > 2 * live_kib and now > live_kib + COLLECT_KIB then
      gc('collect')
      heap_kib = gc('count')
      live_kib = heap_kib
    end
  end
  if spent >= budget then trip() end
end

-- Deterministic printing ---------------------------------------------------------------
local function safe_tostring(v)
  local t = type(v)
  if t == 'table' or t == 'function' or t == 'thread' or t == 'userdata' then
    local mt = dgetmetatable(v)
    if type(mt) == 'table' and rawget(mt, '__tostring') ~= nil then return raw_tostring(v) end
    return t
  end
  return raw_tostring(v)
end
local function tostr_len(v)
  local t = type(v)
  if t == 'string' then return #v end
  if t == 'number' then return #raw_tostring(v) end
  return 0
end

-- string -------------------------------------------------------------------------------
local patterns = load(patterns_src, '=patterns', 'b')(charge_bytes, c_find, raw_tostring)
local function charged_result(f)
  return function(...)
    local r = f(...)
    charge_bytes(#r)
    return r
  end
end
-- string.byte, table.unpack and utf8.codepoint push one value per position: asking for
-- millions makes Lua grow its stack to the error size (16 MB, zeroed) before refusing, for
-- one instruction (0.5 ms each). Charged by the positions asked for, before the call.
local function span(len, i, j)  -- positions i..j of a string (negative from the end, clipped)
  local first, last = raw_tonumber(i), raw_tonumber(j)
  if type(first) ~= 'number' or type(last) ~= 'number' then return end
  if first < 0 then first = len + first + 1 end
  if last < 0 then last = len + last + 1 end
  if first < 1 then first = 1 end
  if last > len then last = len end
  if last >= first then charge(last - first + 1) end
end
local safe_string = {
  len = string.len,
  sub = charged_result(sub),
  upper = charged_result(upper),
  lower = charged_result(lower),
  reverse = charged_result(reverse),
  byte = function(s, i, j, ...)
    if type(s) == 'string' or type(s) == 'number' then
      span(tostr_len(s), i or 1, j or i or 1)
    end
    return byte(s, i, j, ...)
  end,
  char = function(...) charge(select('#', ...)) return char(...) end,
  find = patterns.find, match = patterns.match, gmatch = patterns.gmatch,
  gsub = patterns.gsub,
}
safe_string.rep = function(s, n, sep)
  local count = raw_tonumber(n)
  if type(count) == 'number' and count > 0 then  -- (lstrlib loops count times, even for '')
    charge(count)
    charge_bytes(count * tostr_len(s) + (count - 1) * tostr_len(sep))
  end
  return rep(s, n, sep)
end
safe_string.format = function(fmt, ...)
  if type(fmt) == 'string' then
    charge_bytes(#fmt)
    if c_find(fmt, '%p', 1, true) then error("format '%p' is not allowed", 2) end
  end
  local n = select('#', ...)
  local args = {...}
  for i = 1, n do
    local t = type(args[i])
    if t ~= 'string' and t ~= 'number' then args[i] = safe_tostring(args[i]) end
  end
  local r = format(fmt, unpack(args, 1, n))
  charge_bytes(#r)
  return r
end
local string_mt = dgetmetatable('')
string_mt.__index = safe_string
-- Arithmetic on strings converts them in C (lstrlib's metamethods): charge their length.
for _, event in next, {'__add', '__sub', '__mul', '__div', '__mod', '__pow', '__unm',
                       '__idiv'} do
  local f = string_mt[event]
  if f ~= nil then
    string_mt[event] = function(a, b)
      charge_bytes(tostr_len(a) + tostr_len(b))
      return f(a, b)
    end
  end
end
string_mt.__metatable = false

local function safe_tonumber(v, base)
  if type(v) == 'string' then charge_bytes(#v) end
  return raw_tonumber(v, base)
end

-- table: the loops in Lua (counted by the hook), the rest charged ------------------------
local function table_arg(t, n, fname)
  if type(t) ~= 'table' then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(
      n, fname, t == nil and 'no value' or type(t)), 3)
  end
end
local function int_arg(v, n, fname)
  local i = math.tointeger(v)
  if i == nil then
    error(("bad argument #%d to '%s' (number expected, got %s)"):format(
      n, fname, v == nil and 'no value' or type(v)), 3)
  end
  return i
end
-- The length of a table: Lua's '#' answers any border (t[n] ~= nil, t[n + 1] == nil), and
-- which one depends on the table's layout: its array part's size, set by rehashes whose
-- timing depends on where its string keys hash (the hash seed is per runtime) and its table
-- keys' addresses. With a hole, replicas answered different lengths (attack8). This one is
-- found from the contents only: lhash.c's unbound search from 0 (doubling, then halving).
local maxinteger = math.maxinteger
local function border(t)
  if rawget(t, 1) == nil then return 0 end
  local i, j = 1, 2
  while rawget(t, j) ~= nil do
    i = j
    if j > maxinteger // 2 then  -- built to overflow: a linear search, as lhash.c does
      i = 1
      while rawget(t, i + 1) ~= nil do i = i + 1 end
      return i
    end
    j = j * 2
  end
  while j - i > 1 do  -- t[i] ~= nil, t[j] == nil
    local m = (i + j) // 2
    if rawget(t, m) == nil then j = m else i = m end
  end
  return i
end
local function len(v)  -- the '#' operator (lua_rewrite.py turns '#x' into this call)
  local t = type(v)
  if t == 'string' then return #v end
  if t ~= 'table' then error(format('attempt to get length of a %s value', t), 2) end
  local mt = dgetmetatable(v)
  if mt ~= nil and rawget(mt, '__len') ~= nil then return #v end  -- the script's own __len
  return border(v)
end
local function safe_rawlen(v)
  local t = type(v)
  if t == 'table' then return border(v) end
  if t == 'string' then return #v end
  error("bad argument #1 to 'rawlen' (table or string expected)", 0)
end
local function insert(t, ...)
  table_arg(t, 1, 'insert')
  local e = len(t) + 1
  local nargs = select('#', ...)
  if nargs == 1 then
    t[e] = ...
    return
  end
  if nargs ~= 2 then error("wrong number of arguments to 'insert'", 2) end
  local pos, v = ...
  pos = int_arg(pos, 2, 'insert')
  if pos < 1 or pos > e then error("bad argument #2 to 'insert' (position out of bounds)", 2) end
  for i = e, pos + 1, -1 do t[i] = t[i - 1] end
  t[pos] = v
end
local function remove(t, pos)
  table_arg(t, 1, 'remove')
  local size = len(t)
  if pos == nil then pos = size else pos = int_arg(pos, 2, 'remove') end
  if pos ~= size and (pos < 1 or pos > size + 1) then
    error("bad argument #2 to 'remove' (position out of bounds)", 2)
  end
  local result = t[pos]
  while pos < size do
    t[pos] = t[pos + 1]
    pos = pos + 1
  end
  t[pos] = nil
  return result
end
local function move(a1, f, e, t, a2)
  table_arg(a1, 1, 'move')
  f, e, t = int_arg(f, 2, 'move'), int_arg(e, 3, 'move'), int_arg(t, 4, 'move')
  if a2 == nil then a2 = a1 else table_arg(a2, 5, 'move') end
  if e >= f then
    if not (f > 0 or e < math.maxinteger + f) then
      error("bad argument #3 to 'move' (too many elements to move)", 2)
    end
    local n = e - f + 1
    if t > math.maxinteger - n + 1 then
      error("bad argument #4 to 'move' (destination wrap around)", 2)
    end
    if t > e or t <= f or a1 ~= a2 then
      for i = 0, n - 1 do a2[t + i] = a1[f + i] end
    else
      for i = n - 1, 0, -1 do a2[t + i] = a1[f + i] end
    end
  end
  return a2
end
local function safe_concat(t, sep, i, j)  -- one step per element, even an empty one
  if type(t) == 'table' then
    if j == nil then j = len(t) end  -- (C concat would take its own '#t')
    local first, last = raw_tonumber(i) or 1, raw_tonumber(j)
    if last ~= nil and last >= first then charge(last - first + 1) end
  end
  local r = concat(t, sep, i, j)
  charge_bytes(#r)
  return r
end
local safe_table = {
  concat = safe_concat,
  insert = insert, remove = remove, move = move, pack = pack,  -- (sort: below)
  unpack = function(t, i, j, ...)
    if type(t) == 'table' then
      if j == nil then j = len(t) end  -- (once: unpack with an explicit j calls no __len)
      local first, last = raw_tonumber(i) or 1, raw_tonumber(j)
      if type(last) == 'number' and last >= first then charge(last - first + 1) end
    end
    return unpack(t, i, j, ...)
  end,
}

local safe_math = {}
for k, v in next, math do safe_math[k] = v end
safe_math.random, safe_math.randomseed = nil, nil

local safe_utf8 = {
  char = function(...) charge(select('#', ...)) return utf8_char(...) end,
  charpattern = utf8.charpattern,
  codes = utf8.codes,
  len = function(s, ...) charge_bytes(tostr_len(s)) return utf8_len(s, ...) end,
  offset = function(s, ...) charge_bytes(tostr_len(s)) return utf8_offset(s, ...) end,
  codepoint = function(s, i, j, ...)
    if type(s) == 'string' or type(s) == 'number' then
      span(tostr_len(s), i or 1, j or i or 1)
    end
    return utf8_codepoint(s, i, j, ...)
  end,
}

-- The VM's own operations on long strings (lua_rewrite.py turns them into these calls) ---
-- Strings up to LONG bytes are interned (==, table keys: a pointer test); longer ones are
-- compared with memcmp, copied by .., hashed as keys: charged by their length.
local LONG = 40
local HERE = '[string "<python>"]:'  -- where lupa's chunk (this one) raises errors
local function raw_lt(a, b) return a < b end
local function raw_le(a, b) return a <= b end
local function raw_cat(a, b) return a .. b end
-- An error raised by the operation itself is reported at the script's line, as the VM
-- would (level 4: rethrow, the slow path, the helper, the script); one raised inside a
-- metamethod (the script's own code) passes unchanged.
local function rethrow(err, fallback)
  if type(err) == 'string' and sub(err, 1, #HERE) == HERE then error(fallback, 4) end
  error(err, 0)
end
local function plain(a, b)
  local ta, tb = type(a), type(b)
  return ta == tb and (ta == 'string' or ta == 'number')
end
local function eq_cost(a, b)
  if type(a) == 'string' and type(b) == 'string' then
    local n = #a
    if n > LONG and n == #b then charge_bytes(n) end
  end
end
local function eq(a, b)
  eq_cost(a, b)
  return a == b
end
local function compare(raw, a, b)
  if plain(a, b) then
    if type(a) == 'string' then
      local n = #a
      if #b < n then n = #b end
      if n > LONG then charge_bytes(n) end
    end
    return raw(a, b)
  end
  local ok, r = pcall(raw, a, b)
  if ok then return r end
  local t1, t2 = type(a), type(b)
  rethrow(r, t1 == t2 and format('attempt to compare two %s values', t1)
    or format('attempt to compare %s with %s', t1, t2))
end
local function is_text(v)
  local t = type(v)
  return t == 'string' or t == 'number'
end
local function cat_slow(args, n)  -- right to left, pairwise, as the VM's concat
  local r = args[n]
  for i = n - 1, 1, -1 do
    local a = args[i]
    charge_bytes(tostr_len(a) + tostr_len(r))
    local ok, v = pcall(raw_cat, a, r)
    if not ok then
      local bad = a
      if is_text(a) then bad = r end
      rethrow(v, format('attempt to concatenate a %s value', type(bad)))
    end
    r = v
  end
  return r
end
local function catn(...)  -- a .. b .. c ...: one copy, as the VM's OP_CONCAT
  local n = select('#', ...)
  local args = {...}
  local bytes = 0
  for i = 1, n do
    local v = args[i]
    if not is_text(v) then
      local r = cat_slow(args, n)
      return r
    end
    bytes = bytes + tostr_len(v)
  end
  charge_bytes(bytes)
  return concat(args, '', 1, n)
end
local function cat2(a, b)  -- a .. b, the common case, without building a table
  local ta, tb = type(a), type(b)
  if (ta == 'string' or ta == 'number') and (tb == 'string' or tb == 'number') then
    local n = (ta == 'string' and #a or 24) + (tb == 'string' and #b or 24)  -- a number
    if n > LONG then charge_bytes(n) end                       -- prints in 24 bytes or less
    return a .. b
  end
  local r = cat_slow({a, b}, 2)
  return r
end
local function va(...)  -- '...' in an expression copies every value: one unit each
  charge(select('#', ...))
  return ...
end
local function key(k)
  if type(k) == 'string' then
    local n = #k
    if n > LONG then charge_bytes(n) end
  end
  return k
end
-- table.sort: the C sort randomizes its pivot (clock, time) on unbalanced partitions, so
-- elements the order calls equal, and the order function's calls, differ between replicas.
-- Strings alone or integers alone, without an order function, have one order whatever the
-- pivot: the C sort, charged n log n and the bytes; anything else runs lua_sort.py's port.
local lua_sort = load(sort_src, '=sort', 'b')()
local function default_lt(a, b)  -- a < b, charged as the script's own '<', Lua's errors
  if plain(a, b) then
    if type(a) == 'string' then
      local n = #a
      if #b < n then n = #b end
      if n > LONG then charge_bytes(n) end
    end
    return a < b
  end
  local ok, r = pcall(raw_lt, a, b)
  if ok then return r end
  if type(r) == 'string' and sub(r, 1, #HERE) == HERE then
    local t1, t2 = type(a), type(b)
    error(t1 == t2 and format('attempt to compare two %s values', t1)
          or format('attempt to compare %s with %s', t1, t2), 0)
  end
  error(r, 0)
end
local function safe_sort(t, cmp)
  table_arg(t, 1, 'sort')
  local mt = dgetmetatable(t)
  if mt ~= nil and (rawget(mt, '__len') ~= nil or rawget(mt, '__index') ~= nil) then
    error("table.sort of a table with __len or __index is not allowed in scripts", 2)
  end
  local n = border(t)
  if n < 2 then return end
  if n >= 2147483647 then error("bad argument #1 to 'sort' (array too big)", 2) end
  if cmp ~= nil and type(cmp) ~= 'function' then
    error(format("bad argument #2 to 'sort' (function expected, got %s)", type(cmp)), 2)
  end
  if cmp == nil then
    local first = rawget(t, 1)
    local kind = type(first) == 'string' and 'string' or mtype(first)
    local bytes = 0
    local copy = {}
    for i = 1, n do
      local v = rawget(t, i)
      if kind == 'string' then
        if type(v) ~= 'string' then kind = nil break end
        bytes = bytes + #v
      elseif mtype(v) ~= 'integer' then
        kind = nil
        break
      end
      copy[i] = v
    end
    if kind == 'string' or kind == 'integer' then  -- one order: the C sort, charged
      local levels = log(n, 2) + 1
      charge_bytes(bytes * levels)
      charge(n * levels)
      sort(copy)
      for i = 1, n do t[i] = copy[i] end
      return
    end
    cmp = default_lt
  end
  return lua_sort(t, n, cmp)
end
safe_table.sort = safe_sort

local helpers = {
  __rkv_eq = eq,
  __rkv_ne = function(a, b) return not eq(a, b) end,
  -- (not tail calls: an error's level counts these frames)
  __rkv_lt = function(a, b) local r = compare(raw_lt, a, b) return r end,
  __rkv_le = function(a, b) local r = compare(raw_le, a, b) return r end,
  __rkv_gt = function(a, b) local r = compare(raw_lt, b, a) return r end,
  __rkv_ge = function(a, b) local r = compare(raw_le, b, a) return r end,
  __rkv_cat = cat2,
  __rkv_catn = catn,
  __rkv_key = key,
  __rkv_va = va,
  __rkv_len = len,
}
local function safe_rawequal(a, b)
  eq_cost(a, b)  -- (not eq: rawequal calls no __eq)
  return rawequal(a, b)
end
local function safe_rawget(t, k) return rawget(t, key(k)) end
local function safe_rawset(t, k, v) return rawset(t, key(k), v) end

-- Metatables: no finalizers, no weak tables, short __index chains --------------------------
-- The VM follows a chain of __index (or __newindex) tables in C, up to 2,000 deep, as one
-- instruction. Each table's depth is known when its metatable is set, and a table other
-- metatables already lead to cannot get a new one, so no chain grows past MAX_CHAIN.
local MAX_CHAIN = 4
local depth = {}    -- table -> length of the __index / __newindex chain from it
local targets = {}  -- tables some installed metatable's __index/__newindex lead to
local function chain_depth(mt)
  local d = 0
  for _, event in next, {'__index', '__newindex'} do
    local target = rawget(mt, event)
    if type(target) == 'table' then
      local n = 1 + (depth[target] or 0)
      if n > d then d = n end
    end
  end
  return d
end
local protected = {}  -- installed copy -> true when the script's metatable had __metatable
local function safe_setmetatable(t, mt)
  if type(t) ~= 'table' then
    error(("bad argument #1 to 'setmetatable' (table expected, got %s)"):format(
      t == nil and 'no value' or type(t)), 2)
  end
  if mt ~= nil and type(mt) ~= 'table' then
    error("bad argument #2 to 'setmetatable' (nil or table expected)", 2)
  end
  local current = dgetmetatable(t)
  if current ~= nil and protected[current] then error('cannot change a protected metatable', 2) end
  if mt == nil then
    if targets[t] then
      error('cannot change the metatable of a table another metatable indexes through', 2)
    end
    dsetmetatable(t, nil)
    depth[t] = nil
    return t
  end
  if rawget(mt, '__gc') ~= nil then error('__gc metamethods are not allowed in scripts', 2) end
  if rawget(mt, '__mode') ~= nil then
    error('weak tables (__mode) are not allowed in scripts', 2)
  end
  local call = rawget(mt, '__call')
  if call ~= nil and type(call) ~= 'function' then
    error('__call must be a function in scripts', 2)
  end
  if targets[t] then
    error('cannot change the metatable of a table another metatable indexes through', 2)
  end
  local d = chain_depth(mt)
  if d > MAX_CHAIN then
    error(format('__index/__newindex chains longer than %d are not allowed in scripts',
                 MAX_CHAIN), 2)
  end
  local copy = {}
  for k, v in next, mt do copy[k] = v end
  for _, event in next, {'__index', '__newindex'} do
    local target = rawget(mt, event)
    if type(target) == 'table' then targets[target] = true end
  end
  depth[t] = d
  if rawget(mt, '__metatable') ~= nil then protected[copy] = true else copy.__metatable = mt end
  dsetmetatable(t, copy)
  return t
end

-- pairs in a deterministic order -------------------------------------------------------
-- The keys come out of next() in hash order (the seed is per runtime), so sorting them with
-- an order function in Lua made a different number of comparisons, hence instructions and
-- units, on each replica: a script near the budget ended on some and not others (attack8).
-- Keys are grouped by type (in the order of their type names, as before) and each group of
-- numbers or strings is sorted by the C sort without an order function: distinct keys have
-- one order, no Lua instruction runs, and the cost is charged from the keys alone.
local TYPE_ORDER = {'boolean', 'function', 'number', 'string', 'table', 'thread', 'userdata'}
local ORDERED = {boolean = true, number = true, string = true}
local function sorted_pairs(t)
  local groups = {}
  local n = 0
  for k in next, t do
    local ty = type(k)
    local g = groups[ty]
    if g == nil then
      g = {}
      groups[ty] = g
    end
    g[#g + 1] = k
    n = n + 1
  end
  local keys, m = {}, 0
  for _, ty in ipairs(TYPE_ORDER) do
    local g = groups[ty]
    if g ~= nil then
      local c = #g
      if c > 1 then
        if not ORDERED[ty] then
          error('pairs() over a table with table or function keys is not deterministic', 2)
        end
        if ty == 'boolean' then
          if g[1] then g[1], g[2] = g[2], g[1] end  -- false first
        else
          if ty == 'string' then
            local bytes = 0
            for i = 1, c do
              local k = g[i]
              if #k > LONG then bytes = bytes + #k end
            end
            charge_bytes(bytes * (log(c, 2) + 1))
          end
          sort(g)
        end
      end
      for i = 1, c do
        m = m + 1
        keys[m] = g[i]
      end
    end
  end
  if n > 1 then charge(n * (log(n, 2) + 1)) end
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, t[k] end
  end, t, nil
end

-- redis.* --------------------------------------------------------------------------------
local function to_arg(v)
  local t = type(v)
  if t == 'string' then return v end
  if t == 'number' then
    if mtype(v) == 'integer' then return format('%d', v) end
    return format('%.17g', v)
  end
  error({err = 'ERR Lua redis lib command arguments must be strings or integers'}, 3)
end
local function run_command(protected_call, ...)
  if closed then error('ERR the script has ended', 0) end
  local n = select('#', ...)
  if n == 0 then
    error({err = 'ERR Please specify at least one argument for this redis lib call'}, 3)
  end
  -- One copy of the arguments: select(i, ...) in the loop copied all n of them for each i
  -- (the VM's VARARG), n^2 copies counted as ~8n instructions: one redis.call of 100,000
  -- arguments held every replica's apply 87 s inside the budget (attack8).
  local args = pack(...)
  args.n = nil
  for i = 1, n do args[i] = to_arg(args[i]) end
  local reply, cost = bridge(args, budget - spent)
  charge(cost)
  if not protected_call and type(reply) == 'table' and reply.err ~= nil then error(reply, 0) end
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

-- The reply, as flat tokens: i <int> | f <float> | b <bytes> | s <status> | e <error> | n |
-- a <count> <items...> ----------------------------------------------------------------------
local function to_tokens(value)
  local out, n, bytes = {}, 0, 0
  local onpath = {}
  local function put(v)
    n = n + 1
    if n > max_items then
      error(format('ERR the script reply has more than %d elements', max_items), 0)
    end
    out[n] = v
  end
  local function text(tag, s)
    bytes = bytes + #s
    if bytes > max_bytes then
      error(format('ERR the script reply is larger than %d bytes', max_bytes), 0)
    end
    put(tag)
    put(s)
  end
  local function conv(v, depth)
    local t = type(v)
    if t == 'number' then
      put(mtype(v) == 'integer' and 'i' or 'f')
      put(v)
    elseif t == 'string' then
      text('b', v)
    elseif v == true then
      put('i')
      put(1)
    elseif t == 'table' then
      local e = rawget(v, 'err')
      if type(e) == 'string' then return text('e', e) end
      local ok = rawget(v, 'ok')
      if type(ok) == 'string' then return text('s', ok) end
      if depth >= max_depth or onpath[v] then
        error(format('ERR the script reply is nested deeper than %d levels or contains ' ..
                     'itself', max_depth), 0)
      end
      onpath[v] = true
      put('a')
      local at = n + 1
      put(0)
      local i = 1
      while true do
        local item = rawget(v, i)
        if item == nil then break end
        conv(item, depth + 1)
        i = i + 1
      end
      out[at] = i - 1
      onpath[v] = nil
    else
      put('n')
    end
  end
  conv(value, 0)
  out.n = n
  return out
end

-- One run ------------------------------------------------------------------------------
-- Raising and catching an error costs 0.3-0.6 us (a longjmp, the message, its position):
-- a loop of pcall(error) would do 30x the budget's time. Every pcall/xpcall pays for one.
local PCALL_COST = 30
local function safe_pcall(...)
  charge(PCALL_COST)
  return pcall(...)
end
local function safe_xpcall(f, handler, ...)
  charge(PCALL_COST)
  -- a handler that errors is called again, up to 200 deep, for one xpcall: each call pays
  return xpcall(f, function(...)
    charge(PCALL_COST)
    return handler(...)
  end, ...)
end

local function run(body, keys, argv)
  local env = {
    assert = assert, error = error, ipairs = ipairs, pairs = sorted_pairs, pcall = safe_pcall,
    rawequal = safe_rawequal, rawget = safe_rawget, rawlen = safe_rawlen,
    rawset = safe_rawset,
    select = select,
    setmetatable = safe_setmetatable, getmetatable = getmetatable,
    tonumber = safe_tonumber, tostring = safe_tostring, type = type, xpcall = safe_xpcall,
    unpack = safe_table.unpack, string = safe_string, table = safe_table, math = safe_math,
    utf8 = safe_utf8, redis = redis, KEYS = keys, ARGV = argv, _VERSION = _VERSION,
  }
  for name, helper in next, helpers do env[name] = helper end
  local fn, err = load(body, '@user_script', 't', env)
  if not fn then return 'error', 'ERR Error compiling script (new function): ' .. err, nil end
  if keys == nil then return 'compiled', false, nil end
  if per_kib > 0 then
    gc('stop')
    heap_kib = gc('count')
    live_kib = heap_kib
  end
  sethook(hook, '', step)
  local ok, value = pcall(fn)
  if ok then
    ok, value = pcall(to_tokens, value)
    if ok then return 'reply', value, spent end
    return 'error', value, spent
  end
  if type(value) == 'table' then
    local e = rawget(value, 'err')
    if type(e) == 'string' then return 'redis_error', e, spent end
  end
  if type(value) == 'string' then return 'failed', value, spent end
  return 'failed', safe_tostring(value), spent
end

local function finish()
  closed = true
  return sethook(over, '', 1)  -- a tail call: no instruction of ours runs after it
end

return run, finish
"""
