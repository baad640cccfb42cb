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

Pruning before the search (sound, see ``_prune_info``): an info write whose value nothing
ever observes cannot help any linearization, so it is dropped when the key has no
not-swapped CAS (whose "value != expected" could depend on it).

Budget: at most ``max_states`` configurations per key and an optional wall-clock deadline;
when either runs out the key is ``unknown``, never ``ok``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

from chaos.history import Op, Value

Verdict = Literal["ok", "violation", "unknown"]
DEFAULT_MAX_STATES = 1_000_000

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
    history: Iterable[Op], max_states: int = DEFAULT_MAX_STATES, timeout: float | None = None
) -> Result:
    """Check every key of ``history``; ``timeout`` (seconds) bounds the whole check."""
    deadline = None if timeout is None else time.monotonic() + timeout
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    return Result(tuple(
        check_key(key, by_key[key], max_states=max_states, deadline=deadline)
        for key in sorted(by_key)
    ))


def relevant(ops: Iterable[Op]) -> list[Op]:
    """The operations that constrain the register: no fails, no unknown reads."""
    return [op for op in ops
            if op.outcome != "fail" and not (op.f == "read" and op.outcome != "ok")]


def _prune_info(ops: list[Op]) -> list[Op]:
    """Drop info writes/CASes whose written value no operation could ever observe.

    Sound: take a linearization that includes such an operation W (writing v) and delete W.
    Only the operations between W and the next write see a different register (the value
    before W instead of v). None of them is a write; none is an ok read or swapping CAS of v,
    nor an info CAS expecting v (none exists); an info CAS there did not swap (the register
    held v, not its expected value), so it can be dropped too. Only a not-swapped CAS could
    tell the difference (its "value != expected" might hold for v but not for the old value),
    so when the key has one we keep everything.
    """
    if any(op.f == "cas" and op.outcome == "ok" and not op.result for op in ops):
        return ops
    observed: set[Value] = set()
    for op in ops:
        if op.f == "read":
            observed.add(op.value)
        elif op.f == "cas":
            observed.add(op.value[0])
    return [op for op in ops if op.outcome == "ok" or op.written in observed]


def check_key(
    key: str,
    ops: Sequence[Op],
    max_states: int = DEFAULT_MAX_STATES,
    deadline: float | None = None,
) -> KeyResult:
    """Search for a linearization of one key's operations (all must have ``op.key == key``)."""
    ops = _prune_info(relevant(ops))
    n = len(ops)
    required = [op.outcome == "ok" for op in ops]
    must = sum(required)
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
    # treated as concurrent: the lenient, sound choice). Node 0 is the list head.
    events = sorted([(op.invoke, 0, i) for i, op in enumerate(ops)]
                    + [(op.end, 1, i) for i, op in enumerate(ops)])
    size = 2 * n + 1
    nxt = list(range(1, size + 1))
    nxt[-1] = -1
    prv = list(range(-1, size - 1))
    is_call = [False] * size
    op_of = [0] * size
    match = [0] * size
    call_node = [0] * n
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

    cache: set[tuple[int, Value]] = set()
    stack: list[tuple[int, Value]] = []  # (call node, register before it)
    path: list[int] = []  # op indices linearized so far, in order
    best: list[int] = []
    best_state: Value = None
    linearized = 0
    state: Value = None
    done = 0
    explored = 0
    entry = nxt[0]
    while True:
        if is_call[entry]:
            i = op_of[entry]
            c = code[i]
            if c == _READ:
                accept, new = state == arg_a[i], state
            elif c == _WRITE:
                accept, new = True, arg_a[i]
            elif c == _CAS:
                accept, new = state == arg_a[i], arg_b[i]
            elif c == _CAS_NOT:
                accept, new = state != arg_a[i], state
            else:
                accept, new = True, (arg_b[i] if state == arg_a[i] else state)
            if accept:
                grown = linearized | (1 << i)
                config = (grown, new)
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
                    stack.append((entry, state))
                    path.append(i)
                    state, linearized = new, grown
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
            entry, state = stack.pop()
            i = path.pop()
            linearized ^= 1 << i
            done -= required[i]
            unlift(entry)
            entry = nxt[entry]


def _explain(ops: Sequence[Op], best: list[int], state: Value) -> Explanation:
    """The best prefix and the ok operations that were due next (invoked before the first
    pending ok operation had to return)."""
    taken = set(best)
    pending = [op for i, op in enumerate(ops) if i not in taken and op.outcome == "ok"]
    due = min(op.end for op in pending)
    stuck = sorted((op for op in pending if op.invoke <= due), key=lambda op: op.invoke)
    return Explanation(tuple(ops[i] for i in best), state, tuple(stuck))
