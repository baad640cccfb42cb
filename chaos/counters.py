"""Exactly-once under faults: session clients that retry every INCR and APPEND, and the check.

Unlike the linearizability workload (chaos.workload), these clients retry what may have
failed, the way the client library does with a session (raftkv.kv.sessions): each command
goes as ``RAFT ONCE session seq ...`` and is sent again, with the same sequence number, to
any node after ``-TRYAGAIN``, ``-UNKNOWN``, a timeout or a lost connection, until its
deadline. The check then proves the retries safe: the shared counter equals the acknowledged
increments plus at most the increments whose outcome stayed unknown (with sessions, none
should), and the shared append log holds every acknowledged token exactly once and no token
twice.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import attrs
import trio

from chaos.workload import client_security
from client.connection import TRANSPORT_ERRORS as LOST
from client.connection import Connection
from wire.reply import ErrorReply

Addr = tuple[str, int]
SEPARATOR = ","


@attrs.define
class Tally:
    """What the counter clients were told, for the check."""

    acked_incr: int = 0
    unknown_incr: int = 0
    acked_tokens: set[str] = attrs.Factory(set)
    unknown_tokens: set[str] = attrs.Factory(set)
    sent_tokens: set[str] = attrs.Factory(set)
    retries: int = 0  # sends after the first, all commands
    sessions: int = 0  # sessions opened


@attrs.frozen
class CounterKeys:
    counter: str
    log: str

    @classmethod
    def with_prefix(cls, prefix: str) -> CounterKeys:
        return cls(f"{prefix}ctr", f"{prefix}log")


@attrs.frozen
class Verdict:
    ok: bool
    summary: str


def check_counters(tally: Tally, counter: object, log: object) -> Verdict:
    """Exactly-once, from the final reads of the counter and the log (``chaos.history``
    values: an int, a str, or None for a missing key)."""
    problems = []
    if counter is not None and type(counter) is not int:
        return Verdict(False, f"the counter holds {counter!r}, not an integer")
    value = counter or 0
    low, high = tally.acked_incr, tally.acked_incr + tally.unknown_incr
    if not low <= value <= high:
        problems.append(f"counter {value}, expected {low}" + (
            f"..{high}" if high > low else "") + " (acknowledged increments"
            + (" plus unknown ones)" if high > low else ")"))
    tokens = [t for t in str(log or "").split(SEPARATOR) if t]
    seen = Counter(tokens)
    twice = sorted(t for t, n in seen.items() if n > 1)
    if twice:
        problems.append(f"{len(twice)} appends applied more than once, e.g. {twice[0]}")
    missing = sorted(tally.acked_tokens - seen.keys())
    if missing:
        problems.append(f"{len(missing)} acknowledged appends missing, e.g. {missing[0]}")
    invented = sorted(seen.keys() - tally.sent_tokens)
    if invented:
        problems.append(f"{len(invented)} appends never sent, e.g. {invented[0]}")
    unknown = tally.unknown_incr + len(tally.unknown_tokens)
    summary = (f"counter {value} = {tally.acked_incr} acknowledged increments"
               f"{f' (+{tally.unknown_incr} unknown)' if tally.unknown_incr else ''}; "
               f"{len(tokens)} appends in the log, {len(tally.acked_tokens)} acknowledged; "
               f"{unknown} outcomes unknown after retries; {tally.retries} retried sends "
               f"over {tally.sessions} sessions")
    return Verdict(not problems, "; ".join(problems) or summary)


class CounterClient:
    """One session client: INCRBY of the shared counter and APPEND of unique tokens."""

    def __init__(self, index: int, addrs: Sequence[Addr], keys: CounterKeys, tally: Tally,
                 rng: random.Random, *, rate: float = 10.0, op_deadline: float = 30.0,
                 attempt_timeout: float = 3.0, sessions: bool = True) -> None:
        self.index = index
        self.addrs = list(addrs)
        self.keys = keys
        self.tally = tally
        self.rng = rng
        self.rate = rate
        self.op_deadline = op_deadline
        self.attempt_timeout = attempt_timeout
        self._node = index % len(self.addrs)
        self._conn: Connection | None = None
        self._session = 0
        self._seq = 0
        self._ops = 0
        # False (a test of the check only): the same retries without a session, which
        # can apply a command twice.
        self.sessions = sessions

    async def run(self, stop: trio.Event) -> None:
        try:
            while not stop.is_set():
                await self.step()
                await trio.sleep(self.rng.uniform(0, 2 / self.rate))
        finally:
            with trio.CancelScope(shield=True):
                await self._drop()

    async def step(self) -> None:
        self._ops += 1
        if self.rng.random() < 0.5:
            outcome = await self.once(("INCRBY", self.keys.counter, "1"))
            if outcome == "ok":
                self.tally.acked_incr += 1
            elif outcome == "unknown":
                self.tally.unknown_incr += 1
            return
        token = f"c{self.index}o{self._ops}"
        self.tally.sent_tokens.add(token)
        outcome = await self.once(("APPEND", self.keys.log, token + SEPARATOR))
        if outcome == "ok":
            self.tally.acked_tokens.add(token)
        elif outcome == "unknown":
            self.tally.unknown_tokens.add(token)

    async def once(self, args: tuple[str, ...]) -> str:
        """``ok``, ``fail`` (definitely not applied) or ``unknown`` after the deadline."""
        deadline = trio.current_time() + self.op_deadline
        may_have_applied = False
        seq = 0
        sends = 0
        while trio.current_time() < deadline:
            if sends:
                self.tally.retries += 1
                await trio.sleep(min(0.2, max(0.0, deadline - trio.current_time())))
            sends += 1
            try:
                with trio.fail_at(min(deadline, trio.current_time() + self.attempt_timeout)):
                    conn = await self._connection()
                    if not self.sessions:
                        seq = 1  # (sent: its outcome may be unknown from here on)
                        reply = await conn.request(*args)
                    else:
                        if not self._session:
                            await self._open_session(conn)
                        if not seq:
                            self._seq += 1
                            seq = self._seq
                        reply = await conn.request("RAFT", "ONCE", self._session, seq, *args)
            except (*LOST, trio.TooSlowError):
                may_have_applied = may_have_applied or seq > 0
                await self._drop(next_node=True)
                continue
            if not isinstance(reply, ErrorReply):
                return "ok"
            if reply.text.startswith("TRYAGAIN"):
                continue
            if reply.text.startswith("UNKNOWN"):
                may_have_applied = True
                await self._drop(next_node=True)
                continue
            if reply.text.startswith("SESSIONEXPIRED") and not may_have_applied:
                self._session, seq = 0, 0  # never applied: a new session, a new number
                continue
            return "unknown"  # anything else: the command's fate is not known
        return "unknown" if may_have_applied else "fail"

    async def _open_session(self, conn: Connection) -> None:
        reply = await conn.request("RAFT", "SESSION", "OPEN", "600")
        if type(reply) is not int:
            raise trio.TooSlowError  # TRYAGAIN and the like: try again, maybe elsewhere
        self._session, self._seq = reply, 0
        self.tally.sessions += 1

    async def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = await Connection.open_host(*self.addrs[self._node],
                                                      security=client_security())
        return self._conn

    async def _drop(self, next_node: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()
        if next_node:
            self._node = (self._node + 1) % len(self.addrs)
