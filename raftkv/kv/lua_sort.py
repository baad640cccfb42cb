"""``table.sort`` written in Lua, for scripts: the same order on every replica.

Lua 5.4's C sort (ltablib.c) picks its pivot from ``clock()`` and ``time()`` once a
partition comes out unbalanced (``l_randomizePivot``). Elements the order function calls
equal then end in a different order on each replica, the order function runs a different
number of times (its instructions, its ``redis.call``s), and an order function that is not
a strict order may fail on one replica only (attack8: 1,000 records sorted by a field with
three distinct values left three replicas holding three orders). This port of ltablib.c's
``auxsort`` and ``partition`` always takes the middle pivot (what the C code does until it
randomizes), so its comparisons are a function of the input; it runs in the VM, so the
budget counts them. Same results as the C sort without randomization, same errors
(``invalid order function for sorting``).

``SORT`` is a Lua chunk: called with no arguments it returns ``sort(a, n, lt)``, which sorts
``a[1..n]`` with ``lt(x, y)`` (a boolean) in place.
"""

SORT = r"""
local error = error

return function(a, n, lt)
  -- ltablib.c's partition: a[up - 1] holds the pivot P; returns its final index
  local function partition(P, lo, up)
    local i, j = lo, up - 1
    while true do
      i = i + 1
      local vi = a[i]
      while lt(vi, P) do  -- repeat ++i while a[i] < P
        if i == up - 1 then error('invalid order function for sorting', 0) end
        i = i + 1
        vi = a[i]
      end
      j = j - 1
      local vj = a[j]
      while lt(P, vj) do  -- repeat --j while P < a[j]
        if j < i then error('invalid order function for sorting', 0) end
        j = j - 1
        vj = a[j]
      end
      if j < i then  -- swap the pivot (a[up - 1]) with a[i]
        a[up - 1] = vi
        a[i] = P
        return i
      end
      a[i] = vj
      a[j] = vi
    end
  end

  local function auxsort(lo, up)
    while lo < up do
      local vlo, vup = a[lo], a[up]
      if lt(vup, vlo) then
        a[lo] = vup
        a[up] = vlo
      end
      if up - lo == 1 then return end
      local p = (lo + up) // 2  -- the middle, always (never l_randomizePivot)
      local vp
      vp, vlo = a[p], a[lo]
      if lt(vp, vlo) then
        a[p] = vlo
        a[lo] = vp
      else
        vup = a[up]
        if lt(vup, vp) then
          a[p] = vup
          a[up] = vp
        end
      end
      if up - lo == 2 then return end
      local P = a[p]
      a[p] = a[up - 1]
      a[up - 1] = P
      p = partition(P, lo, up)
      if p - lo < up - p then  -- recurse into the shorter side, loop on the other
        auxsort(lo, p - 1)
        lo = p + 1
      else
        auxsort(p + 1, up)
        up = p - 1
      end
    end
  end

  if n > 1 then auxsort(1, n) end
end
"""
