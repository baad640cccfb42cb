"""Per-key linearizability of a register-with-CAS history (Wing-Gong-Lowe search).

The search is the one in Lowe's "Testing for linearizability" (2017), as Porcupine runs it:
call and return events sorted by time in a doubly linked list; the search walks the list,
*lifts* a call (and its return) out when the model accepts the operation, and backtracks
(*unlifts*) when it meets a return whose call is still pending. A cache of
(linearized set as a bitset, register value) prunes configurations already explored: the
future of the search depends on nothing else.

Model: one register per key, initially ``None`` (missing). Histories are partitioned by key
and each key is checked on its own (linearizability is compositional).

Outcomes: ``fail`` operations never happened and are dropped; reads that are not ``ok``
observed nothing and are dropped. ``info`` writes and CASes may have taken effect at any
point after their invoke, or never: their return event is at +infinity, so they never force
a backtrack, and the search succeeds as soon as every ``ok`` operation is linearized (an info
operation left over simply did not happen). An info CAS, if linearized, swaps when the
compare holds and does nothing otherwise (its answer is unknown).

Info operations are what make this search expensive (each may or may not have happened,
at any later time), so three sound reductions keep them in check:

- an info operation that would not change the register where it is tried (a CAS whose
  compare fails, a write of the current value) is not linearized there: doing so is the
  same as leaving it out, and would only split the cache;
- info operations whose written value nothing observes are dropped when the key has no
  not-swapped CAS, and otherwise applied only just in time, before a not-swapped CAS that
  needs the value to change (see ``_split_silent``);
- the cache keys the linearized ok operations as a bitset shifted past its run of low
  ones (the search goes roughly in invoke order), and the info ones as a separate bitset.

Expiry (writes with a ``ttl``): the state machine stamps a write when it applies, some time
in the write's [invoke, complete], so the key reads as missing from a deadline D in
[invoke + ttl, complete + ttl]; ``uncertainty`` (seconds) widens that window on both sides
for the clock differences README's "Uncertainty" documents (0 on one host, but client and
node clocks differ by scheduling and ms rounding). On a key with such writes the register
is (value, earliest deadline, latest deadline), and an operation linearized in
[invoke, end] may see the value if it started before the latest deadline and the key
missing if it ended after the earliest: both outcomes are legal inside the window, and
once the key is seen missing it stays missing until the next write (a CAS keeps the
deadline, as RaftKV's CAS keeps the TTL). This is sound (never a false violation) and
lenient (a not-swapped CAS leaves the window as it was). Keys with expiring writes get none
of the reductions below: an unobserved info write can still explain a read of a missing key.

Budget: at most ``max_states`` configurations per key and an optional wall-clock deadline;
when either runs out the key is ``unknown``, never ``ok``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

from chaos.history import Op, Value

Verdict = Literal["ok", "violation", "unknown"]
DEFAULT_MAX_STATES = 1_000_000
DEFAULT_UNCERTAINTY = 0.05  # seconds either side of an expiring write's deadline window
_NEVER = math.inf

# Model operation codes.
_READ, _WRITE, _CAS, _CAS_NOT, _CAS_MAYBE = range(5)
_PREFIX_SHOWN = 8


@attrs.frozen
class Explanation:
    """Why a key is not linearizable, Porcupine-style.

    ``prefix`` is the longest linearization of operations the search found (in linearization
    order), ``state`` the register value after it, and ``stuck`` the ``ok`` operations that
    were pending there: no order of the remaining operations extends the prefix.
    """

    prefix: tuple[Op, ...]
    state: Value
    stuck: tuple[Op, ...]

    def render(self) -> str:
        lines = [f"  longest linearizable prefix: {len(self.prefix)} operations"]
        skipped = len(self.prefix) - _PREFIX_SHOWN
        if skipped > 0:
            lines.append(f"    ... {skipped} earlier operations")
        lines += [f"    {op.describe()}" for op in self.prefix[-_PREFIX_SHOWN:]]
        lines.append(f"  register after it: {self.state!r}")
        lines.append("  could not be linearized next:")
        for op in self.stuck:
            why = _rejection(op, self.state)
            lines.append(f"    {op.describe()}" + (f"  ({why})" if why else ""))
        return "\n".join(lines)


def _rejection(op: Op, state: Value) -> str:
    """Why the model refuses ``op`` on ``state`` directly ('' if it would accept it)."""
    if isinstance(state, tuple):  # an expiring register: the window says it (see render)
        return ""
    if op.f == "read" and op.value != state:
        return f"read {op.value!r} but the register holds {state!r}"
    if op.f == "cas" and op.outcome == "ok":
        expected = op.value[0]
        if op.result and expected != state:
            return f"swapped from {expected!r} but the register holds {state!r}"
        if not op.result and expected == state:
            return f"refused to swap though the register holds {state!r}"
    return ""


@attrs.frozen
class KeyResult:
    """The verdict for one key."""

    key: str
    verdict: Verdict
    ops: int  # operations searched (after dropping fail ops, non-ok reads, unobserved info)
    explored: int  # configurations the search visited
    explanation: Explanation | None = None
    reason: str = ""  # why a key is unknown

    def render(self) -> str:
        head = f"{self.key!r}: {self.verdict} ({self.ops} ops, {self.explored} states)"
        if self.verdict == "unknown":
            return f"{head}: {self.reason}"
        if self.explanation is not None:
            return f"{head}\n{self.explanation.render()}"
        return head

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"key": self.key, "verdict": self.verdict, "ops": self.ops,
                                "explored": self.explored}
        if self.reason:
            d["reason"] = self.reason
        if self.explanation is not None:
            e = self.explanation
            d["explanation"] = {"prefix": [op.to_json() for op in e.prefix], "state": e.state,
                                "stuck": [op.to_json() for op in e.stuck]}
        return d


@attrs.frozen
class Result:
    """The verdicts for every key of a history."""

    keys: tuple[KeyResult, ...]

    @property
    def verdict(self) -> Verdict:
        """``violation`` if any key has one, else ``unknown`` if any is, else ``ok``."""
        verdicts = {k.verdict for k in self.keys}
        for v in ("violation", "unknown"):
            if v in verdicts:
                return v  # type: ignore[return-value]
        return "ok"

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def summary(self) -> str:
        count = {v: sum(k.verdict == v for k in self.keys) for v in ("ok", "violation", "unknown")}
        n = len(self.keys)
        if self.verdict == "ok":
            return f"linearizable: all {n} keys ok"
        if self.verdict == "violation":
            return f"NOT linearizable: {count['violation']} of {n} keys violate linearizability"
        return (f"UNKNOWN: {count['unknown']} of {n} keys exhausted the search budget "
                f"(raise --budget); no violation found in the others")

    def render(self) -> str:
        return "\n".join([k.render() for k in self.keys] + [self.summary()])


def check(
    history: Iterable[Op], max_states: int = DEFAULT_MAX_STATES, timeout: float | None = None,
    uncertainty: float = DEFAULT_UNCERTAINTY,
) -> Result:
    """Check every key of ``history``; ``timeout`` (seconds) bounds the whole check."""
    deadline = None if timeout is None else time.monotonic() + timeout
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    return Result(tuple(
        check_key(key, by_key[key], max_states=max_states, deadline=deadline,
                  uncertainty=uncertainty)
        for key in sorted(by_key)
    ))


def relevant(ops: Iterable[Op]) -> list[Op]:
    """The operations that constrain the register: no fails, no unknown reads."""
    return [op for op in ops
            if op.outcome != "fail" and not (op.f == "read" and op.outcome != "ok")]


def _split_silent(ops: list[Op]) -> tuple[list[Op], list[Op]]:
    """Set aside the info operations whose written value nothing ever observes.

    Returns (searched, silent). A value is observed if an ok read returned it or a CAS
    expects it. To the model every unobserved value looks alike: no read or swapping CAS
    can match it and every not-swapped CAS accepts it. So, in any linearization, an info
    operation W writing an unobserved value can be moved later, up to the first not-swapped
    CAS that needs the register to differ from what it held before W (the operations it
    passes over are not writes and cannot tell; an info CAS it passes over that would now
    swap is dropped: it may not have happened), and deleted if there is none. Hence:

    - with no not-swapped CAS on the key, such operations are dropped outright;
    - otherwise the info *writes* among them are "silent": the search applies one only
      just in time, right before a not-swapped CAS that the current value would refuse,
      and then the earliest-invoked one available (they are interchangeable). Info CASes
      stay in the search, as their effect depends on the register.
    """
    observed: set[Value] = set()
    for op in ops:
        if op.f == "read":
            observed.add(op.value)
        elif op.f == "cas":
            observed.add(op.value[0])
    unseen = [op.outcome == "info" and op.written not in observed for op in ops]
    if not any(op.f == "cas" and op.outcome == "ok" and not op.result for op in ops):
        return [op for op, u in zip(ops, unseen, strict=True) if not u], []
    silent = [u and op.f == "write" for op, u in zip(ops, unseen, strict=True)]
    return ([op for op, s in zip(ops, silent, strict=True) if not s],
            [op for op, s in zip(ops, silent, strict=True) if s])


def check_key(
    key: str,
    ops: Sequence[Op],
    max_states: int = DEFAULT_MAX_STATES,
    deadline: float | None = None,
    uncertainty: float = DEFAULT_UNCERTAINTY,
) -> KeyResult:
    """Search for a linearization of one key's operations (all must have ``op.key == key``)."""
    timed = any(op.ttl is not None for op in ops)
    if timed:
        searched, silent = relevant(ops), []
    else:
        searched, silent = _split_silent(relevant(ops))
    # Index order: ok operations by invoke, then info ones, then silent ones. The linearized
    # set is two bitsets: ok operations (bit i) and the others (bit i - n_ok). The search
    # linearizes roughly in invoke order, so the ok set is mostly a run of low ones and the
    # cache stores it shifted past that run (the cache's memory is what bounds a search).
    searched.sort(key=lambda op: (op.outcome != "ok", op.invoke))
    silent.sort(key=lambda op: op.invoke)
    ops = searched + silent
    n = len(ops)
    first_silent = len(searched)
    required = [op.outcome == "ok" for op in ops]
    must = n_ok = sum(required)
    if must == 0:
        return KeyResult(key, "ok", n, 0)

    code: list[int] = []
    arg_a: list[Value] = []
    arg_b: list[Value] = []
    for op in ops:
        if op.f == "read":
            code.append(_READ)
            arg_a.append(op.value)
            arg_b.append(None)
        elif op.f == "write":
            code.append(_WRITE)
            arg_a.append(op.value)
            arg_b.append(None)
        else:
            code.append(_CAS_MAYBE if op.outcome == "info" else _CAS if op.result else _CAS_NOT)
            arg_a.append(op.value[0])
            arg_b.append(op.value[1])

    # Events sorted by time, calls before returns at equal times (touching operations are
    # treated as concurrent: the lenient, sound choice). Node 0 is the list head. Silent
    # operations have no node: they are never candidates on their own.
    events = sorted([(op.invoke, 0, i) for i, op in enumerate(searched)]
                    + [(op.end, 1, i) for i, op in enumerate(searched)])
    size = 2 * first_silent + 1
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    prv = list(range(-1, size - 1))
    is_call = [False] * size
    op_of = [0] * size
    match = [0] * size
    call_node = [0] * first_silent
    for node, (_, kind, i) in enumerate(events, 1):
        op_of[node] = i
        if kind == 0:
            is_call[node] = True
            call_node[i] = node
        else:
            match[call_node[i]] = node

    def lift(c: int) -> None:
        p, q = prv[c], nxt[c]
        nxt[p] = q
        if q != -1:
            prv[q] = p
        r = match[c]
        p, q = prv[r], nxt[r]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def unlift(c: int) -> None:
        r = match[c]
        p, q = prv[r], nxt[r]
        nxt[p] = r
        if q != -1:
            prv[q] = r
        p, q = prv[c], nxt[c]
        nxt[p] = c
        if q != -1:
            prv[q] = c

    def silent_for(entry: int, maybe: int) -> int:
        """The earliest-invoked unused silent write invoked before the next due return."""
        node = entry
        while is_call[node]:
            node = nxt[node]
        due = ops[op_of[node]].end
        for j in range(first_silent, n):
            if not maybe >> (j - n_ok) & 1:
                return j if ops[j].invoke <= due else -1
        return -1

    cache: set[tuple[int, int, int, Value]] = set()
    # Choice points: (call node, register before it, silent op applied with it or -1).
    stack: list[tuple[int, Value, int]] = []
    path: list[int] = []  # op indices linearized so far, in order
    best: list[int] = []
    best_state: Value = None
    lin_ok = 0  # linearized ok operations
    lin_maybe = 0  # linearized info (and silent) operations
    state: Value = (None, _NEVER, _NEVER) if timed else None
    done = 0
    explored = 0
    entry = nxt[0]
    while True:
        if is_call[entry]:
            i = op_of[entry]
            c = code[i]
            helper = -1
            if timed:
                accept, new = _timed_step(c, ops[i], state, uncertainty)  # type: ignore[arg-type]
            elif c == _READ:
                accept, new = state == arg_a[i], state
            elif c == _WRITE:  # an info write of the current value changes nothing: skip it
                accept, new = required[i] or state != arg_a[i], arg_a[i]
            elif c == _CAS:
                accept, new = state == arg_a[i], arg_b[i]
            elif c == _CAS_NOT:
                accept, new = state != arg_a[i], state
                if not accept and first_silent < n:
                    helper = silent_for(entry, lin_maybe)
                    if helper != -1:
                        accept, new = True, arg_a[helper]
            else:
                # An info CAS that would not swap here is as good as not linearized yet.
                accept, new = state == arg_a[i], arg_b[i]
            if accept:
                if required[i]:
                    ok_bits, maybe_bits = lin_ok | (1 << i), lin_maybe
                else:
                    ok_bits, maybe_bits = lin_ok, lin_maybe | (1 << (i - n_ok))
                if helper != -1:
                    maybe_bits |= 1 << (helper - n_ok)
                run = (~ok_bits & (ok_bits + 1)).bit_length() - 1  # trailing ones
                config = (ok_bits >> run, run, maybe_bits, new)
                if config not in cache:
                    explored += 1
                    if explored > max_states:
                        return KeyResult(key, "unknown", n, explored - 1,
                                         reason=f"search budget of {max_states} states exhausted")
                    if (deadline is not None and explored % 1024 == 0
                            and time.monotonic() > deadline):
                        return KeyResult(key, "unknown", n, explored,
                                         reason="time limit reached")
                    cache.add(config)
                    stack.append((entry, state, helper))
                    if helper != -1:
                        path.append(helper)
                    path.append(i)
                    state, lin_ok, lin_maybe = new, ok_bits, maybe_bits
                    done += required[i]
                    lift(entry)
                    if done == must:
                        return KeyResult(key, "ok", n, explored)
                    if len(path) > len(best):
                        best, best_state = path[:], state
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            # A return whose call is still pending: that operation had to be linearized
            # before this point, so undo the last choice and try the next candidate.
            if not stack:
                return KeyResult(key, "violation", n, explored,
                                 explanation=_explain(ops, best, best_state))
            entry, state, helper = stack.pop()
            i = path.pop()
            if required[i]:
                lin_ok ^= 1 << i
            else:
                lin_maybe ^= 1 << (i - n_ok)
            if helper != -1:
                path.pop()
                lin_maybe ^= 1 << (helper - n_ok)
            done -= required[i]
            unlift(entry)
            entry = nxt[entry]


_Timed = tuple[Value, float, float]


def _timed_step(code: int, op: Op, state: _Timed, uncertainty: float) -> tuple[bool, _Timed]:
    """The expiring register's answer to ``op``: (accepted, state after it)."""
    value, earliest, latest = state
    possible: list[Value] = [None] if value is None else []
    if value is not None:
        if op.invoke < latest:
            possible.append(value)  # it may have been read before the deadline
        if op.end >= earliest:
            possible.append(None)  # or after it
    if code == _READ:
        if op.value not in possible:
            return False, state
        return True, ((None, _NEVER, _NEVER) if op.value is None else state)
    if code == _WRITE:
        if op.ttl is None:
            new = (op.value, _NEVER, _NEVER)
        else:
            new = (op.value, op.invoke + op.ttl - uncertainty, op.end + op.ttl + uncertainty)
        return (op.outcome == "ok" or new != state), new
    expected, written = op.value
    if code == _CAS_NOT:
        return any(v != expected for v in possible), state
    # a swap (ok, or an info CAS tried here) keeps the deadline window of a live value
    if expected is None:
        return expected in possible, (written, _NEVER, _NEVER)
    return expected in possible, (written, earliest, latest)


def _explain(ops: Sequence[Op], best: list[int], state: Value) -> Explanation:
    """The best prefix and the ok operations that were due next (invoked before the first
    pending ok operation had to return)."""
    taken = set(best)
    pending = [op for i, op in enumerate(ops) if i not in taken and op.outcome == "ok"]
    due = min(op.end for op in pending)
    stuck = sorted((op for op in pending if op.invoke <= due), key=lambda op: op.invoke)
    return Explanation(tuple(ops[i] for i in best), state, tuple(stuck))
