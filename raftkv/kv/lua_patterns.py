"""Lua's pattern functions (string.find/match/gmatch/gsub) written in Lua, for scripts.

The C versions in lstrlib run outside the VM, so the instruction budget's count hook never
sees them: a backtracking pattern such as ``('.-'):rep(5) .. 'b'`` over a few thousand
bytes runs for hours inside one ``find`` call, on every replica. This port of lstrlib's
matcher (Lua 5.4.6: same syntax, captures, ``%b``, ``%f``, anchors, 200-deep recursion and
32-capture limits, same results) runs in the VM, so every matching step is an instruction
the budget counts, identically on every replica. Character classes (``%a``, ``%w``...)
are ASCII, as in the C locale, whatever the process's locale (the C version asks
``isalpha``, which differs between locales). Plain searches (``find`` with ``plain`` or a
pattern without special characters) use C ``find`` for the first byte of each candidate
and charge the bytes compared (``charge_bytes``).

``PATTERNS`` is a Lua chunk: called with ``(charge_bytes, c_find, tostr)`` it returns a
table ``{find=, match=, gmatch=, gsub=}``.
"""

PATTERNS = r"""
local charge_bytes, c_find, tostr = ...
local byte, sub, char, concat = string.byte, string.sub, string.char, table.concat
local type, error, tointeger, tonumber = type, error, math.tointeger, tonumber
local unpack = table.unpack

local L_ESC = 37            -- '%'
local MAXCAPTURES = 32
local MAXCCALLS = 200
local CAP_UNFINISHED, CAP_POSITION = -1, -2
local SPECIALS = '[%^%$%*%+%?%.%(%[%%%-]'  -- lstrlib's SPECIALS

local function checkstr(v, n, fname)
  local t = type(v)
  if t == 'string' then return v end
  if t == 'number' then return tostr(v) end
  error(("bad argument #%d to '%s' (string expected, got %s)"):format(n, fname,
        v == nil and 'no value' or t), 0)
end

local function optint(v, n, fname, default)
  if v == nil then return default end
  local i = tointeger(v)
  if i == nil and type(v) == 'string' then i = tointeger(tonumber(v)) end
  if i == nil then
    error(("bad argument #%d to '%s' (number has no integer representation)"):format(n, fname), 0)
  end
  return i
end

-- posrelatI: a 1-based start position (negative counts from the end).
local function posrelat(pos, len)
  if pos > 0 then return pos
  elseif pos == 0 then return 1
  elseif pos < -len then return 1
  else return len + pos + 1 end
end

local classes = {
  [97] = function(c) return (c >= 65 and c <= 90) or (c >= 97 and c <= 122) end,  -- a
  [99] = function(c) return c < 32 or c == 127 end,                             -- c
  [100] = function(c) return c >= 48 and c <= 57 end,                           -- d
  [103] = function(c) return c >= 33 and c <= 126 end,                          -- g
  [108] = function(c) return c >= 97 and c <= 122 end,                          -- l
  [112] = function(c)                                                          -- p
    return (c >= 33 and c <= 47) or (c >= 58 and c <= 64) or (c >= 91 and c <= 96)
      or (c >= 123 and c <= 126) end,
  [115] = function(c) return c == 32 or (c >= 9 and c <= 13) end,               -- s
  [117] = function(c) return c >= 65 and c <= 90 end,                           -- u
  [119] = function(c)                                                          -- w
    return (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) end,
  [122] = function(c) return c == 0 end,                                        -- z (5.1)
  [120] = function(c)                                                          -- x
    return (c >= 48 and c <= 57) or (c >= 65 and c <= 70) or (c >= 97 and c <= 102) end,
}

local function match_class(c, cl)
  local lower = cl
  if cl >= 65 and cl <= 90 then lower = cl + 32 end
  local f = classes[lower]
  if f == nil then return cl == c end
  local res = f(c)
  if lower ~= cl then return not res end
  return res
end

local function class_end(ms, p)
  local pat = ms.pat
  local c = byte(pat, p)
  p = p + 1
  if c == L_ESC then
    if p > ms.p_end then error("malformed pattern (ends with '%')", 0) end
    return p + 1
  elseif c == 91 then  -- '['
    if byte(pat, p) == 94 then p = p + 1 end
    repeat
      if p > ms.p_end then error("malformed pattern (missing ']')", 0) end
      c = byte(pat, p)
      p = p + 1
      if c == L_ESC and p <= ms.p_end then p = p + 1 end
    until byte(pat, p) == 93
    return p + 1
  end
  return p
end

-- p at '[', ec at the closing ']'.
local function match_bracket(ms, c, p, ec)
  local pat = ms.pat
  local sig = true
  if byte(pat, p + 1) == 94 then sig = false; p = p + 1 end
  p = p + 1
  while p < ec do
    local pc = byte(pat, p)
    if pc == L_ESC then
      p = p + 1
      if match_class(c, byte(pat, p)) then return sig end
    elseif byte(pat, p + 1) == 45 and p + 2 < ec then  -- range a-z
      if pc <= c and c <= byte(pat, p + 2) then return sig end
      p = p + 2
    elseif pc == c then
      return sig
    end
    p = p + 1
  end
  return not sig
end

local function single_match(ms, s, p, ep)
  if s > ms.src_end then return false end
  local c = byte(ms.src, s)
  local pc = byte(ms.pat, p)
  if pc == 46 then return true                                  -- '.'
  elseif pc == L_ESC then return match_class(c, byte(ms.pat, p + 1))
  elseif pc == 91 then return match_bracket(ms, c, p, ep - 1)
  end
  return pc == c
end

local match

local function match_balance(ms, s, p)
  if p >= ms.p_end then error("malformed pattern (missing arguments to '%b')", 0) end
  local src = ms.src
  if byte(src, s) ~= byte(ms.pat, p) then return nil end
  local b, e = byte(ms.pat, p), byte(ms.pat, p + 1)
  local cont = 1
  s = s + 1
  while s <= ms.src_end do
    local c = byte(src, s)
    if c == e then
      cont = cont - 1
      if cont == 0 then return s + 1 end
    elseif c == b then
      cont = cont + 1
    end
    s = s + 1
  end
  return nil
end

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do i = i + 1 end
  while i >= 0 do
    local res = match(ms, s + i, ep + 1)
    if res then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local res = match(ms, s, ep + 1)
    if res then return res end
    if single_match(ms, s, p, ep) then s = s + 1 else return nil end
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level
  if level >= MAXCAPTURES then error('too many captures', 0) end
  ms.cinit[level] = s
  ms.clen[level] = what
  ms.level = level + 1
  local res = match(ms, s, p)
  if res == nil then ms.level = ms.level - 1 end
  return res
end

local function capture_to_close(ms)
  local level = ms.level - 1
  while level >= 0 do
    if ms.clen[level] == CAP_UNFINISHED then return level end
    level = level - 1
  end
  error('invalid pattern capture', 0)
end

local function end_capture(ms, s, p)
  local l = capture_to_close(ms)
  ms.clen[l] = s - ms.cinit[l]
  local res = match(ms, s, p)
  if res == nil then ms.clen[l] = CAP_UNFINISHED end
  return res
end

local function check_capture(ms, l)
  l = l - 49  -- '1'
  if l < 0 or l >= ms.level or ms.clen[l] == CAP_UNFINISHED then
    error(('invalid capture index %%%d'):format(l + 1), 0)
  end
  return l
end

local function match_capture(ms, s, l)
  l = check_capture(ms, l)
  local len = ms.clen[l]
  if len < 0 then return nil end  -- a position capture (C: a huge size_t, never fits)
  charge_bytes(2 * len)
  if ms.src_end - s + 1 >= len and
      sub(ms.src, ms.cinit[l], ms.cinit[l] + len - 1) == sub(ms.src, s, s + len - 1) then
    return s + len
  end
  return nil
end

match = function(ms, s, p)
  ms.depth = ms.depth - 1
  if ms.depth < 0 then error('pattern too complex', 0) end
  local pat = ms.pat
  while true do
    if p > ms.p_end then break end
    local pc = byte(pat, p)
    local default = false
    if pc == 40 then  -- '('
      if byte(pat, p + 1) == 41 then s = start_capture(ms, s, p + 2, CAP_POSITION)
      else s = start_capture(ms, s, p + 1, CAP_UNFINISHED) end
      break
    elseif pc == 41 then  -- ')'
      s = end_capture(ms, s, p + 1)
      break
    elseif pc == 36 and p == ms.p_end then  -- '$' at the end
      if s ~= ms.src_end + 1 then s = nil end
      break
    elseif pc == L_ESC then
      local nc = byte(pat, p + 1)
      if nc == 98 then  -- %b
        s = match_balance(ms, s, p + 2)
        if s == nil then break end
        p = p + 4
      elseif nc == 102 then  -- %f
        p = p + 2
        if byte(pat, p) ~= 91 then error("missing '[' after '%f' in pattern", 0) end
        local ep = class_end(ms, p)
        local previous = (s == 1) and 0 or byte(ms.src, s - 1)
        local current = byte(ms.src, s) or 0
        if not match_bracket(ms, previous, p, ep - 1) and match_bracket(ms, current, p, ep - 1)
        then
          p = ep
        else
          s = nil
          break
        end
      elseif nc ~= nil and nc >= 48 and nc <= 57 then  -- %0-%9
        s = match_capture(ms, s, nc)
        if s == nil then break end
        p = p + 2
      else
        default = true
      end
    else
      default = true
    end
    if default then
      local ep = class_end(ms, p)
      local epc = byte(pat, ep)
      if not single_match(ms, s, p, ep) then
        if epc == 42 or epc == 63 or epc == 45 then  -- '*' '?' '-': accept empty
          p = ep + 1
        else
          s = nil
          break
        end
      elseif epc == 63 then  -- '?'
        local res = match(ms, s + 1, ep + 1)
        if res then s = res; break end
        p = ep + 1
      elseif epc == 43 then  -- '+'
        s = max_expand(ms, s + 1, p, ep)
        break
      elseif epc == 42 then  -- '*'
        s = max_expand(ms, s, p, ep)
        break
      elseif epc == 45 then  -- '-'
        s = min_expand(ms, s, p, ep)
        break
      else
        s = s + 1
        p = ep
      end
    end
  end
  ms.depth = ms.depth + 1
  return s
end

local function new_state(src, pat, p_start)
  return {src = src, src_end = #src, pat = pat, p_end = #pat, p_start = p_start,
          level = 0, depth = MAXCCALLS, cinit = {}, clen = {}}
end

local function reprep(ms)
  ms.level = 0
  ms.depth = MAXCCALLS
end

-- The capture i (0-based) of a match s..e-1, as a value (a string or a position).
local function get_capture(ms, i, s, e)
  if i >= ms.level then
    if i ~= 0 then error(('invalid capture index %%%d'):format(i + 1), 0) end
    charge_bytes(e - s)
    return sub(ms.src, s, e - 1)
  end
  local l = ms.clen[i]
  if l == CAP_UNFINISHED then error('unfinished capture', 0) end
  if l == CAP_POSITION then return ms.cinit[i] end
  charge_bytes(l)
  return sub(ms.src, ms.cinit[i], ms.cinit[i] + l - 1)
end

local function captures(ms, s, e, whole)
  local n = ms.level
  if n == 0 and whole then n = 1 end
  local out = {}
  for i = 0, n - 1 do out[i + 1] = get_capture(ms, i, s, e) end
  return unpack(out, 1, n)
end

local function plain_find(s, p, init)
  local m = #p
  if m == 0 then return init, init - 1 end
  local first, last = sub(p, 1, 1), #s - m + 1
  local pos = init
  while pos <= last do
    local i = c_find(s, first, pos, true)
    if i == nil or i > last then
      charge_bytes(#s - pos)
      return nil
    end
    charge_bytes(i - pos + 2 * m)
    if sub(s, i, i + m - 1) == p then return i, i + m - 1 end
    pos = i + 1
  end
  return nil
end

local function find_aux(find, fname, s, p, init, plain)
  s = checkstr(s, 1, fname)
  p = checkstr(p, 2, fname)
  local ls = #s
  init = posrelat(optint(init, 3, fname, 1), ls)
  if init > ls + 1 then return nil end
  if find and (plain or not c_find(p, SPECIALS)) then
    charge_bytes(#p)
    return plain_find(s, p, init)
  end
  local anchor = byte(p, 1) == 94
  local ms = new_state(s, p)
  local start = anchor and 2 or 1
  local s1 = init
  repeat
    reprep(ms)
    local e = match(ms, s1, start)
    if e then
      if find then return s1, e - 1, captures(ms, nil, nil, false) end
      return captures(ms, s1, e, true)
    end
    s1 = s1 + 1
  until s1 > ls + 1 or anchor
  return nil
end

local function find(s, p, init, plain) return find_aux(true, 'find', s, p, init, plain) end
local function match_fn(s, p, init) return find_aux(false, 'match', s, p, init, false) end

local function gmatch(s, p, init)
  s = checkstr(s, 1, 'gmatch')
  p = checkstr(p, 2, 'gmatch')
  local ls = #s
  init = posrelat(optint(init, 3, 'gmatch', 1), ls)
  if init > ls + 1 then init = ls + 2 end
  local ms = new_state(s, p)
  local src, lastmatch = init, nil
  return function()
    while src <= ls + 1 do
      reprep(ms)
      local e = match(ms, src, 1)
      if e and e ~= lastmatch then
        local start = src
        src, lastmatch = e, e
        return captures(ms, start, e, true)
      end
      src = src + 1
    end
    return nil
  end
end

local function add_string(ms, out, news, s, e)
  local l = #news
  local i = 1
  while true do
    local j = c_find(news, '%', i, true)
    charge_bytes((j or l + 1) - i)
    if j == nil then break end
    out[#out + 1] = sub(news, i, j - 1)
    local c = byte(news, j + 1)
    if c == L_ESC then
      out[#out + 1] = '%'
    elseif c == 48 then
      charge_bytes(e - s)
      out[#out + 1] = sub(ms.src, s, e - 1)
    elseif c ~= nil and c >= 49 and c <= 57 then
      local v = get_capture(ms, c - 49, s, e)
      out[#out + 1] = type(v) == 'number' and tostr(v) or v
    else
      error("invalid use of '%' in replacement string", 0)
    end
    i = j + 2
  end
  out[#out + 1] = sub(news, i)
end

local function gsub(s, p, repl, max_n)
  s = checkstr(s, 1, 'gsub')
  p = checkstr(p, 2, 'gsub')
  local tr = type(repl)
  if tr ~= 'number' and tr ~= 'string' and tr ~= 'function' and tr ~= 'table' then
    error(("bad argument #3 to 'gsub' (string/function/table expected, got %s)"):format(
          repl == nil and 'no value' or tr), 0)
  end
  if tr == 'number' then repl = tostr(repl); tr = 'string' end
  local ls = #s
  max_n = optint(max_n, 4, 'gsub', ls + 1)
  local anchor = byte(p, 1) == 94
  local start = anchor and 2 or 1
  local ms = new_state(s, p)
  local out = {}
  local src, lastmatch, n, changed, copied = 1, nil, 0, false, 1
  while n < max_n do
    reprep(ms)
    local e = match(ms, src, start)
    if e and e ~= lastmatch then
      n = n + 1
      if copied < src then out[#out + 1] = sub(s, copied, src - 1) end
      if tr == 'string' then
        add_string(ms, out, repl, src, e)
        changed = true
      else
        local value
        if tr == 'function' then value = repl(captures(ms, src, e, true))
        else value = repl[get_capture(ms, 0, src, e)] end
        if not value then
          out[#out + 1] = sub(s, src, e - 1)
        elseif type(value) == 'string' or type(value) == 'number' then
          out[#out + 1] = type(value) == 'number' and tostr(value) or value
          changed = true
        else
          error(('invalid replacement value (a %s)'):format(type(value)), 0)
        end
      end
      src, lastmatch, copied = e, e, e
    elseif src <= ls then
      src = src + 1
    else
      break
    end
    if anchor then break end
  end
  if not changed then return s, n end
  if copied <= ls then out[#out + 1] = sub(s, copied) end
  local result = concat(out)
  charge_bytes(#result)
  return result, n
end

return {find = find, match = match_fn, gmatch = gmatch, gsub = gsub}
"""
