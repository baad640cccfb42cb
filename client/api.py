"""The async client: endpoints, leader discovery, reconnects, deadlines and safe retries.

Every call (one command or a pipeline) runs under one deadline and goes through ``_run``,
the single place that decides whether a failed command is sent again (see
``client.safety``): after ``-TRYAGAIN`` or a connection that failed before the request
left, always; after ``-UNKNOWN``, a connection lost after sending, reads and idempotent
writes only; in a pipeline, only while no later command of it was (or may have been)
applied, so a refused write never applies behind a later one (``_may_resend``). Nodes
that refuse the client's credentials are not asked again (``CredentialsRefused``, at once);
dead ones are, until the deadline. Anything else is reported to the caller (``TryAgain``,
``OutcomeUnknown``), never hidden.

A client holds one connection, preferably to the leader (``INFO raft`` names it, which
saves followers the forwarding hop); concurrent tasks share it one exchange at a time, so
open several clients, or pipeline, for parallel traffic.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import random
import ssl as ssl_module
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs
import trio

from client.commands import Arg, Commands, Convert, convert_reply, parse_info
from client.connection import TRANSPORT_ERRORS, Connection, failure_reason, parse_endpoints
from client.errors import (
    ConnectionFailed,
    CredentialsRefused,
    DeadlineExceeded,
    LeaderUnreachable,
    OutcomeUnknown,
    RaftKVError,
    ReplyNotKept,
    ResponseError,
    TransactionLost,
    TryAgain,
    error_from_reply,
)
from client.pipeline import Pipeline
from client.safety import Safety, classify, word
from client.security import AuthRefused, Security
from client.status import NodeStatus, cluster_status
from client.watch import Watch
from raftkv.backoff import Backoff
from raftkv.kv import lookup
from wire.reply import ErrorReply, SimpleString
from wire.resp import encode_command

_PENDING: Any = object()  # no result yet for this command
# Who makes a call: a SyncClient's calls (each a new task in its trio thread) set their
# user thread (the Thread object: an ident is reused once its thread ends, attack16) here;
# otherwise the calling trio task. A caller whose WATCH or MULTI the server holds keeps the
# connection until it ends them (``Client._hold``), or until the caller itself ends.
CALLER: contextvars.ContextVar[threading.Thread | None] = contextvars.ContextVar(
    "raftkv_client_caller", default=None)
_HOLDER_POLL = 0.1  # seconds between looks at whether a holding thread still exists


def _caller() -> object:
    return CALLER.get() or trio.lowlevel.current_task()


class _HolderEnds(trio.abc.Instrument):
    """Wakes the calls waiting for a client's connection when the task holding it exits:
    trio's ``task_exited`` hook, installed only while a call waits behind a task (it sees
    every task of the run that exits meanwhile: one ``is`` each)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.waiters = 0

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        client = self.client
        if task is client._holder:
            client._released.set()
            client._released = trio.Event()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if not self.waiters:
            trio.lowlevel.add_instrument(self)
        self.waiters += 1
        try:
            yield
        finally:
            self.waiters -= 1
            if not self.waiters:
                with contextlib.suppress(KeyError):  # (trio drops an instrument that raised)
                    trio.lowlevel.remove_instrument(self)


def _ended(caller: object) -> bool:
    """Has ``caller`` (a Thread, or a trio Task) ended?"""
    if isinstance(caller, threading.Thread):
        return not caller.is_alive()
    coro = getattr(caller, "coro", None)
    return coro is not None and inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
OK = SimpleString("OK")
_ENDS_TRANSACTION = frozenset({b"exec", b"discard", b"reset"})
_APPLIES_NOTHING = frozenset({b"multi", b"watch", b"unwatch", b"discard", b"reset"})
FULL_TABLE = "ERR too many client sessions"  # raftkv.kv.sessions.TOO_MANY: full for now


def _is_kv_write(name: bytes) -> bool:
    """A state-machine write (what RAFT ONCE may carry), not a connection command."""
    spec = lookup(name)
    return spec is not None and spec.is_write and not spec.internal


@attrs.define
class _Session:
    """This client's session: its id, the next sequence number, when it was last used."""

    sid: int
    last_used: float
    next_seq: int = 1


@attrs.define
class _Call:
    """One call's commands (one command or a pipeline) on their way through retries."""

    limit: float
    deadline: float
    safety: list[Safety]
    payloads: list[bytes]
    names: list[bytes]  # each command's name, lower case
    results: list[Any] = attrs.field(init=False)
    sends: list[int] = attrs.field(init=False)  # attempts that sent each command
    tagged: dict[int, int] = attrs.Factory(dict)  # command -> its session (RAFT ONCE)
    maybe: set[int] = attrs.Factory(set)  # sent, then unanswered or -UNKNOWN: may have applied
    last: BaseException | None = None

    def __attrs_post_init__(self) -> None:
        self.results = [_PENDING] * len(self.payloads)
        self.sends = [0] * len(self.payloads)

    def note_sent(self, todo: list[int]) -> None:
        for i in todo:
            self.sends[i] += 1

    def expire(self, i: int, sent: bool) -> RaftKVError:
        """The result of command ``i`` when the deadline passes before its answer."""
        may_have_applied = sent or (i in self.tagged and self.sends[i] > 0)
        if may_have_applied and (self.safety[i] is Safety.UNSAFE or i in self.tagged):
            return OutcomeUnknown(f"UNKNOWN deadline of {self.limit}s passed after the "
                                  "command was sent; it may or may not have been applied")
        if isinstance(self.last, TryAgain | ConnectionFailed):
            return type(self.last)(str(self.last))
        reason = f"; last failure: {self.last}" if self.last is not None else ""
        return DeadlineExceeded(f"deadline of {self.limit}s passed{reason}")

    def refused(self, i: int, exc: CredentialsRefused) -> RaftKVError:
        """The result of command ``i`` when the nodes refuse the client's credentials before
        it could be sent (again): ``OutcomeUnknown`` if an earlier send may have applied
        it, as at the deadline (``expire``)."""
        if self.safety[i] is not Safety.READ and (
                i in self.maybe or (i in self.tagged and self.sends[i] > 0)):
            return OutcomeUnknown(f"UNKNOWN an earlier send may have been applied; now {exc}")
        return CredentialsRefused(str(exc))


@attrs.define
class _Attempt:
    """What one send-and-receive round got through before it ended."""

    addr: str | None = None
    conn: Connection | None = None
    sent: bool = False
    replies: list[Any] = attrs.Factory(list)
    failure: BaseException | None = None


class Client(Commands):
    """Async RaftKV client; use as ``async with connect([...]) as kv``.

    ``timeout`` is the deadline of each call (all retries included; an attribute, so it
    can be changed between calls);
    ``connect_timeout`` bounds each connect and leader probe, so a paused node is skipped;
    ``leader_grace`` is how long a leader that cannot be reached is waited for (see
    ``_connect``); ``attempt_timeout`` is how long a read or idempotent write waits for
    one node before trying another (the server answers within its request timeout, 5 s,
    unless it is paused or cut off).
    """

    def __init__(
        self,
        endpoints: str | Iterable[str] | None = None,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 1.0,
        leader_grace: float = 2.0,
        attempt_timeout: float = 6.0,
        eager: bool = True,
        backoff_base: float = 0.05,
        backoff_cap: float = 1.0,
        rng: random.Random | None = None,
        sessions: bool = True,
        session_timeout: float = 300.0,
        ssl: ssl_module.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        # TLS and AUTH on every connection (client/security.py); None: plain, anonymous.
        self.security = (Security(ssl, username, password or None)
                         if ssl is not None or password else None)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.leader_grace = leader_grace
        self.attempt_timeout = attempt_timeout
        self._unreachable_since: dict[str, float] = {}  # leader address -> first failure
        self.eager = eager
        self._backoff = (backoff_base, backoff_cap)
        self._rng = rng or random.Random()
        self._conn: Connection | None = None
        # Who holds the connection: one call at a time, and the caller whose WATCH or MULTI
        # the server holds until it ends it (``_hold``). Not a trio.Lock: a SyncClient's
        # calls are each a new task, and the holder is the caller (``CALLER``).
        self._holder: object | None = None
        self._released = trio.Event()
        self._holder_ends = _HolderEnds(self)
        self._after: str | None = None  # endpoint that failed last: try the others first
        self._closed = False
        self.sessions = sessions
        self.session_timeout = session_timeout
        self._session: _Session | None = None
        self._in_multi = False  # the caller sent MULTI: its commands go untagged
        # The connection on which the server holds this client's WATCH or MULTI (None: no
        # transaction open). A new connection would not have them: see ``_transaction_lost``.
        self._txn_conn: Connection | None = None
        self._txn_multi = False
        self._txn_watch = False  # (a WATCH is part of it: only a new WATCH starts again)
        # TransactionLost was handed to the caller for the open transaction: only then is a
        # WATCH (or MULTI) on a lost connection "starting again" (attack17).
        self._told_lost = False
        self._watches: weakref.WeakSet[Watch] = weakref.WeakSet()  # closed with the client

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self.eager:
            await self.connect_once()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect_once(self) -> str:
        """Connect now (one round through the endpoints, no retries); the node's address.

        Raises ``ConnectionFailed`` when no endpoint answers, so a command line can say
        "no cluster" at once instead of retrying until the deadline.
        """
        caller = _caller()
        if not await self._hold(caller, trio.current_time() + self.timeout):
            raise DeadlineExceeded(f"deadline of {self.timeout}s passed: "
                                   f"{self._held_why() or 'another call used the connection'}")
        try:
            if self._conn is None or self._conn.stale():
                await self._drop()
                while self._conn is None:
                    try:
                        self._conn = await self._connect()
                    except LeaderUnreachable:
                        await trio.sleep(self._backoff[0])  # ends: leader_grace passes
            return self._conn.addr
        finally:
            self._let_go(caller)

    async def aclose(self) -> None:
        self._closed = True
        for w in list(self._watches):
            await w.aclose()
        try:
            await self._close_session()
        finally:
            await self._drop()

    async def _close_session(self) -> None:
        """Free this client's session on the server: a short-lived client (a ``raftkv-cli``
        call, a ``connect_sync`` per request) left it in the table for its whole timeout,
        and 300 such clients left 300 sessions (attack14). Best effort: on the connection
        already open, within ``connect_timeout``, and not while another task's call holds
        the connection (the session then expires on its own)."""
        session, self._session = self._session, None
        conn = self._conn
        if session is None or conn is None or self._holder is not None or conn.stale():
            return
        with trio.move_on_after(self.connect_timeout), contextlib.suppress(*TRANSPORT_ERRORS):
            await conn.request(b"RAFT", b"SESSION", b"CLOSE", session.sid)

    @property
    def current_endpoint(self) -> str | None:
        """The node this client is connected to right now, if any."""
        return self._conn.addr if self._conn is not None else None

    def pipeline(self) -> Pipeline:
        return Pipeline(self)

    def watch(self, pattern: str | bytes = "*", start: str = "$", **options: Any) -> Watch:
        """Every change to the keys matching ``pattern`` (a Redis glob), in log order:
        ``async for change in kv.watch("user:*"):``. ``start``: ``"$"`` only changes from
        now on, ``"0"`` everything the nodes retain, or the id of the last change seen
        (resume after it). It reads on its own connection, from any node, and moves to
        another node when its node fails, never yielding a change twice or skipping one
        (client.watch); ``options`` go to ``Watch`` (``count``, ``block``, ...)."""
        if self._closed:
            raise ConnectionFailed("the client is closed")
        options.setdefault("connect_timeout", self.connect_timeout)
        options.setdefault("attempt_timeout", self.attempt_timeout)
        options.setdefault("security", self.security)
        watch = Watch(self.endpoints, pattern, start, **options)
        self._watches.add(watch)
        return watch

    async def cluster_status(self) -> list[NodeStatus]:
        """Every endpoint's Raft state (``raftkv-cli status``), asked of each node."""
        return await cluster_status(self.endpoints, self.connect_timeout, self.security)

    # -- commands ----------------------------------------------------------------------------

    async def execute(self, *args: Arg) -> Any:
        """Run any command; its raw reply, or the typed error raised."""
        (result,) = await self._run([args])
        if isinstance(result, BaseException):
            raise result
        return result

    def _call(self, args: tuple[Arg, ...], convert: Convert = None) -> Any:
        return self._call_async(args, convert)

    async def _call_async(self, args: tuple[Arg, ...], convert: Convert) -> Any:
        return convert_reply(await self.execute(*args), convert)

    # -- the retry loop ----------------------------------------------------------------------

    async def _run(self, cmds: Sequence[tuple[Arg, ...]]) -> list[Any]:
        """Results in order: reply values, or ``RaftKVError`` instances (not raised).

        The deadline is ``self.timeout`` from now, not a cancel scope around the call: on
        expiry the caller must still learn whether a write may have been applied.
        """
        if self._closed:
            raise ConnectionFailed("the client is closed")
        if not all(cmds):
            raise ValueError("empty command")
        payloads = [encode_command(*c) for c in cmds]  # bad argument types fail here
        call = _Call(self.timeout, trio.current_time() + self.timeout,
                     [classify(c) for c in cmds], payloads, [word(c[0]) for c in cmds])
        caller = _caller()
        # Another call is using the connection, or another caller's WATCH/MULTI holds it.
        if not await self._hold(caller, call.deadline):
            call.last = self._held_why()
            return [call.expire(i, False) for i in range(len(cmds))]
        try:
            if self.sessions:
                await self._tag(cmds, call)
            await self._retry_loop(call)
            return self._untag(call)
        finally:
            # Untagged from here on exactly while the server holds a MULTI of ours (a MULTI
            # that failed left the flag set, and later writes went without the session).
            self._in_multi = self._txn_multi
            # While the server holds this caller's WATCH or MULTI, the connection stays its
            # own: another task's SET went into the open MULTI, was told True, and the
            # DISCARD dropped it (attack15). Let go once the transaction ends.
            if self._txn_conn is None:
                self._let_go(caller)

    async def _hold(self, caller: object, deadline: float) -> bool:
        """Take the connection for ``caller`` (already its own while its transaction is
        open); False if ``deadline`` passes first. A holder that ended with its WATCH or
        MULTI open (an exception between MULTI and EXEC) loses it: the connection is
        dropped, so the server discards that transaction (attack16: the client hung, or a
        new thread with a reused ident wrote into the old MULTI). A task's end wakes the
        wait (``_HolderEnds``); a thread's is polled, every _HOLDER_POLL: Python has no
        hook for it, and its Thread object outlives it (no weakref finalizer fires)."""
        with trio.move_on_at(deadline):
            while self._holder is not None and self._holder != caller:
                if self._txn_conn is not None and _ended(self._holder):
                    self._end_transaction()
                    self._holder = None
                    await self._drop()
                    break
                if isinstance(self._holder, trio.lowlevel.Task):
                    with self._holder_ends.installed():
                        await self._released.wait()
                else:
                    with trio.move_on_after(_HOLDER_POLL):
                        await self._released.wait()
            self._holder = caller
            return True
        return False

    def _held_why(self) -> RaftKVError | None:
        """Why a call could not have the connection, if a transaction holds it."""
        if self._txn_conn is None:
            return None
        return RaftKVError("another task's (or thread's) open WATCH/MULTI holds this "
                           "client's connection until its EXEC, DISCARD, UNWATCH or RESET")

    def _let_go(self, caller: object) -> None:
        if self._holder == caller:
            self._holder = None
            self._released.set()
            self._released = trio.Event()

    async def _retry_loop(self, call: _Call) -> None:
        """Send the call's commands until each has its answer, or its deadline passes, or
        sending one again is not safe."""
        safety, results = call.safety, call.results
        todo = list(range(len(call.payloads)))
        backoff = Backoff(*self._backoff, self._rng)
        while True:
            if self._closed:  # (by another task: never reconnect a closed client, attack15)
                for i in todo:
                    results[i] = ConnectionFailed("the client was closed")
                return
            if self._txn_conn is not None and (self._conn is not self._txn_conn
                                               or self._txn_conn.stale()):
                first = call.names[todo[0]]
                again = first == b"watch" or (first == b"multi" and not self._txn_watch)
                if not (again and self._told_lost and not call.sends[todo[0]]):
                    self._transaction_lost(call, todo)
                    return
                # Starting again, as TransactionLost says: the lost one is over (attack16:
                # MULTI was refused too, for ever, so a retry loop spun). Not a MULTI after
                # a lost WATCH: its EXEC would run unwatched (attack14's lost update). And
                # only once the caller was told: a WATCH after a silent loss adds a key to
                # the lost watch, and its EXEC would run without the first (attack17).
                self._end_transaction()
            attempt = _Attempt()
            bound = self._txn_conn is not None  # a WATCH/MULTI holds the connection
            # Only sends that are safe to repeat give up on a silent node early (it may be
            # paused) to try another; an unsafe one waits for its answer.
            safe = all(safety[i] is not Safety.UNSAFE for i in todo)
            give_up = min(call.deadline, trio.current_time() + self.attempt_timeout) if (
                safe) else call.deadline
            try:
                with trio.move_on_at(give_up) as scope:
                    await self._attempt(b"".join(call.payloads[i] for i in todo), len(todo),
                                        attempt)
            except BaseException:
                await self._drop()  # cut short by the caller: a late reply would be misread
                raise
            if isinstance(attempt.failure, CredentialsRefused):
                # Live nodes checked the credentials and refused them: asking again until
                # the deadline got the same answer (and counted against their AUTH
                # throttle), and raftkv-cli's REPL fell back from a typed AUTH whose
                # password was changed only after --timeout (attack23). A dead node is
                # still asked again (ConnectionFailed), until the deadline.
                for i in todo:
                    results[i] = call.refused(i, attempt.failure)
                return
            self._absorb(attempt, todo, results)
            self._track(call, todo, attempt)
            if attempt.sent:
                call.note_sent(todo)
            if scope.cancelled_caught and give_up < call.deadline:
                attempt.failure = TimeoutError(
                    f"{attempt.addr or 'no node'} did not answer within "
                    f"{self.attempt_timeout}s")
                await self._drop()
            elif scope.cancelled_caught:
                await self._drop()
                for i in todo:
                    if results[i] is _PENDING:
                        results[i] = call.expire(i, attempt.sent)
                return
            unanswered = set(todo[len(attempt.replies):])
            first = next((pos for pos, i in enumerate(todo) if i in unanswered
                          or isinstance(results[i], TryAgain | OutcomeUnknown)), None)
            if first is None:
                return
            suffix = todo[first:]
            # (an EXEC or DISCARD sent ended it in ``_track``: it was bound all the same)
            bound = attempt.sent and (bound or self._txn_conn is not None or any(
                call.names[i] in (b"exec", b"discard") for i in todo))
            if bound and (attempt.failure is None or self._txn_conn is None):
                # The server's WATCH/MULTI lives on this connection: never drop it or send
                # elsewhere (attack17: a second WATCH's -TRYAGAIN dropped the first WATCH,
                # an EXEC's went out alone on a new connection). The caller gets the
                # TryAgain; a lost connection is TransactionLost at the loop's top.
                for i in suffix:
                    if results[i] is _PENDING:
                        results[i] = self._unanswered(call, todo, i, attempt)
                return

            if not self._may_resend(call, suffix, attempt, unanswered):
                for i in suffix:
                    if i in unanswered:
                        results[i] = self._unanswered(call, todo, i, attempt)
                return
            call.last = attempt.failure if todo[first] in unanswered else results[todo[first]]
            if isinstance(call.last, TryAgain | OutcomeUnknown) or attempt.failure is not None:
                await self._drop()  # find the leader again before the retry
            delay = backoff.delay()
            backoff.failed()
            if trio.current_time() + delay >= call.deadline:
                for i in suffix:
                    if results[i] is _PENDING:
                        results[i] = call.expire(i, False)
                return
            await trio.sleep(delay)
            call.maybe.update(i for i in suffix if isinstance(results[i], OutcomeUnknown) or (
                attempt.sent and i in unanswered))
            for i in suffix:
                results[i] = _PENDING
            todo = suffix

    @staticmethod
    def _may_resend(call: _Call, suffix: list[int], attempt: _Attempt,
                    unanswered: set[int]) -> bool:
        """Whether ``suffix``, from the first command without a definite answer, may be
        sent again: sending that one again is safe (it was refused, never sent, or is a
        read or a session's write), and no later command was applied, or may have been
        (answered anything but -TRYAGAIN, -UNKNOWN included, or sent and not answered;
        reads apply nothing). Else the refused command would apply after a later one of the same
        pipeline: ``APPEND k a,`` refused and ``APPEND k b,`` applied left ``b,a,``, both
        reported done (attack20). Then the caller gets each failure as it is, as a Redis
        pipeline reports a failed command and runs the rest."""
        safety, results = call.safety, call.results
        first, later = suffix[0], suffix[1:]
        if first in unanswered:
            safe = not attempt.sent or safety[first] is not Safety.UNSAFE
        else:
            safe = isinstance(results[first], TryAgain) or safety[first] is not Safety.UNSAFE
        return safe and not any(
            safety[i] is not Safety.READ and (
                attempt.sent if i in unanswered else not isinstance(results[i], TryAgain))
            for i in later)

    # -- sessions: every write at most once (raftkv.kv.sessions) -----------------------------

    async def _tag(self, cmds: Sequence[tuple[Arg, ...]], call: _Call) -> None:
        """Wrap each unsafe write in ``RAFT ONCE id seq``, which makes it safe to send again;
        opens the session first if there is none (or it has been idle too long)."""
        unsafe = []
        for i, kind in enumerate(call.safety):
            name = word(cmds[i][0])
            if name == b"multi":  # queued commands cannot be RAFT ONCE (not in MULTI)
                self._in_multi = True
            elif name in (b"exec", b"discard"):
                self._in_multi = False
            elif kind is Safety.UNSAFE and not self._in_multi and _is_kv_write(name):
                unsafe.append(i)
        if not unsafe:
            return
        session = await self._session_for(call.deadline)
        if session is None:
            return  # no session (an older server, or none in time): plain sends, as before
        for i in unsafe:
            seq = session.next_seq
            session.next_seq += 1
            call.payloads[i] = encode_command(b"RAFT", b"ONCE", session.sid, seq, *cmds[i])
            call.safety[i] = Safety.IDEMPOTENT
            call.tagged[i] = session.sid
        session.last_used = trio.current_time()

    async def _session_for(self, deadline: float) -> _Session | None:
        session = self._session
        now = trio.current_time()
        # Reopen well before the server would expire it (its clock is the leader's stamps).
        if session is not None and now - session.last_used < self.session_timeout / 2:
            return session
        self._session = None
        backoff = Backoff(*self._backoff, self._rng)
        open_cmd = encode_command(b"RAFT", b"SESSION", b"OPEN", int(self.session_timeout))
        while trio.current_time() < deadline:
            attempt = _Attempt()
            with trio.move_on_at(min(deadline, trio.current_time() + self.attempt_timeout)):
                await self._attempt(open_cmd, 1, attempt)  # a lost reply leaks one session
            reply = attempt.replies[0] if attempt.replies else None
            if type(reply) is int:
                self._session = _Session(reply, trio.current_time())
                return self._session
            if isinstance(attempt.failure, CredentialsRefused):
                return None  # (the call's own send says so at once: ``_retry_loop``)
            retryable = reply is None or (isinstance(reply, ErrorReply) and reply.text.startswith(
                ("TRYAGAIN", "UNKNOWN")))
            if isinstance(reply, ErrorReply) and reply.text.startswith(FULL_TABLE):
                return None  # full for now (attack14): plain sends, and ask again next call
            if not retryable:
                self.sessions = False  # a server without sessions: plain sends from now on
                return None
            if reply is None or self._txn_conn is None:  # (keep a WATCH/MULTI's connection)
                await self._drop()
            await trio.sleep(min(backoff.delay(), max(0.0, deadline - trio.current_time())))
            backoff.failed()
        return None

    def _untag(self, call: _Call) -> list[Any]:
        """Session errors of tagged commands, in the client's terms."""
        results = call.results
        for i, sid in call.tagged.items():
            error = results[i]
            if not isinstance(error, ResponseError):
                continue
            if error.code == "SESSIONEXPIRED":
                if self._session is not None and self._session.sid == sid:
                    self._session = None  # the next call opens a new one
                results[i] = (OutcomeUnknown(f"UNKNOWN {error.text}; an earlier send may "
                                             "have been applied") if call.sends[i] > 1
                              else TryAgain(f"TRYAGAIN {error.text}"))
            elif "acknowledged mark" in error.text:
                results[i] = OutcomeUnknown(f"UNKNOWN {error.text}")
            elif error.code == "ERR" and "already applied; its reply was not kept" in error.text:
                results[i] = ReplyNotKept(error.text)
        return results

    # -- transactions: WATCH and MULTI live on one connection --------------------------------

    def _track(self, call: _Call, todo: list[int], attempt: _Attempt) -> None:
        """Note the WATCH or MULTI the server now holds on this attempt's connection, and
        the EXEC, DISCARD, UNWATCH or RESET that ended it."""
        for i, reply in zip(todo, attempt.replies, strict=False):
            name = call.names[i]
            if name in (b"watch", b"multi") and reply == OK:
                self._txn_conn = attempt.conn
                self._txn_multi = self._txn_multi or name == b"multi"
                self._txn_watch = self._txn_watch or name == b"watch"
            elif name in _ENDS_TRANSACTION or (name == b"unwatch" and not self._txn_multi):
                self._end_transaction(keep_multi_flag=True)

    def _end_transaction(self, keep_multi_flag: bool = False) -> None:
        """The server holds no WATCH or MULTI of ours any more."""
        self._txn_conn, self._txn_multi, self._txn_watch = None, False, False
        self._told_lost = False
        if not keep_multi_flag:  # (``_run`` sets it from ``_txn_multi`` after the call)
            self._in_multi = False

    def _transaction_lost(self, call: _Call, todo: list[int]) -> None:
        """The connection holding the WATCH or MULTI is gone, and with it the server's
        transaction: nothing is sent (attack14: on a new connection ``EXEC`` ran without
        its ``WATCH``, and a queued ``SET`` ran at once, alone). Each command fails; one
        this call sent that may have applied (a write run at once after ``WATCH``, sent
        with its session and unanswered) is ``OutcomeUnknown``: "nothing applied" would
        have the caller send it again (attack17 follow-up: an ``INCR`` twice)."""
        for pos, i in enumerate(todo):
            name = call.names[i]
            queued = self._txn_multi and not any(
                call.names[j] == b"exec" for j in todo[pos + 1:])
            if (i in call.maybe and call.safety[i] is not Safety.READ
                    and name not in _APPLIES_NOTHING and not queued):
                call.results[i] = OutcomeUnknown(
                    "UNKNOWN the connection holding this client's WATCH/MULTI failed after "
                    "the command was sent; it may or may not have been applied (the "
                    "transaction is lost: start it again)")
            else:
                call.results[i] = self._lost_transaction(name)

    def _lost_transaction(self, name: bytes) -> TransactionLost:
        what = "MULTI" if self._txn_multi else "WATCH"
        self._told_lost = True  # (the caller gets it: now a new WATCH starts again)
        if name in _ENDS_TRANSACTION or (name == b"unwatch" and not self._txn_multi):
            self._end_transaction()
        return TransactionLost(
            f"the connection holding this client's {what} was lost, and the server "
            "discarded the transaction (nothing of it was applied): start it again")

    def _unanswered(self, call: _Call, todo: list[int], i: int,
                    attempt: _Attempt) -> RaftKVError:
        """A command sent and not answered, whose connection failed: ``OutcomeUnknown``,
        unless it was part of a transaction that connection held and cannot have applied:
        queued after MULTI with no EXEC sent after it, or one that applies nothing."""
        name = call.names[i]
        txn = self._txn_conn
        if txn is None or txn is not attempt.conn or self._conn is txn:
            return self._lost(attempt)
        if name in _ENDS_TRANSACTION:  # sent: the server ran it or dropped the transaction
            self._end_transaction()
            return self._lost(attempt)  # (attack15: the transaction stayed open after it)
        # A queued command is applied by an EXEC sent after it, if that EXEC ran (attack15:
        # MULTI; INCR; EXEC pipelined and unanswered reported INCR as not applied).
        exec_sent = any(j > i and call.names[j] == b"exec" for j in todo)
        if name in _APPLIES_NOTHING or (self._txn_multi and not exec_sent):
            return self._lost_transaction(name)
        return self._lost(attempt)

    @staticmethod
    def _absorb(attempt: _Attempt, todo: list[int], results: list[Any]) -> None:
        for i, reply in zip(todo, attempt.replies, strict=False):
            results[i] = error_from_reply(reply.text) if isinstance(reply, ErrorReply) else reply

    @staticmethod
    def _lost(attempt: _Attempt) -> OutcomeUnknown:
        err = OutcomeUnknown(
            f"UNKNOWN the connection to {attempt.addr} failed after the command was sent "
            f"({attempt.failure or 'no reply'}); it may or may not have been applied"
        )
        err.__cause__ = attempt.failure
        return err

    async def _attempt(self, data: bytes, count: int, attempt: _Attempt) -> None:
        """Send ``count`` encoded commands in one write and read their replies."""
        try:
            conn = await self._connection()
        except ConnectionFailed as exc:
            attempt.failure = exc
            return
        attempt.addr, attempt.conn = conn.addr, conn
        attempt.sent = True
        try:
            await conn.send(data)
        except TRANSPORT_ERRORS as exc:
            # A failed send_all never sent its last byte: one command is definitely lost
            # before reaching the node; of several, the first ones may have gone out.
            attempt.failure = exc
            attempt.sent = count > 1
            await self._drop()
            return
        try:
            for _ in range(count):
                attempt.replies.append(await conn.receive_reply())
        except TRANSPORT_ERRORS as exc:
            attempt.failure = exc
            await self._drop()

    # -- connections -------------------------------------------------------------------------

    async def _connection(self) -> Connection:
        if self._closed:
            raise ConnectionFailed("the client was closed")
        if self._conn is not None and self._conn.stale():
            await self._drop()
        if self._conn is None:
            self._conn = await self._connect()
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._after = conn.addr
            await conn.aclose()

    def _order(self) -> list[str]:
        eps = self.endpoints
        if self._after in eps:
            i = eps.index(self._after) + 1
            return eps[i:] + eps[:i]
        return list(eps)

    async def _connect(self) -> Connection:
        """One round through the endpoints: the first that answers ``INFO raft``, replaced
        by the leader it names when the leader can be reached.

        A named leader that cannot be reached has usually just died and the nodes do not
        know yet; a follower would forward to it and wait for the server's request timeout.
        So for ``leader_grace`` seconds the round fails instead (``LeaderUnreachable``: the
        caller backs off and asks again, by when an election has usually named a new
        leader); after that the client settles for the node it asked (a leader that
        lives on but is unroutable from here, say).
        """
        errors: list[str] = []
        refused: list[str] = []  # the nodes that refused our AUTH
        fallback: Connection | None = None
        unreachable = ""
        for addr in self._order():
            conn = await self._open(addr, errors, refused)
            if conn is None:
                continue
            leader = await self._leader_of(conn, errors)
            if leader is None:
                await conn.aclose()
                continue
            if not leader or leader == addr:
                break
            direct = await self._open(leader, errors, refused)
            if direct is not None:
                self._unreachable_since.pop(leader, None)
                if leader not in self.endpoints:
                    self.endpoints.append(leader)
                await conn.aclose()
                conn = direct
                break
            since = self._unreachable_since.setdefault(leader, trio.current_time())
            if trio.current_time() - since >= self.leader_grace:
                break
            unreachable = leader
            if fallback is None:
                fallback = conn
            else:
                await conn.aclose()
        else:
            if fallback is not None:
                await fallback.aclose()
            if unreachable:
                raise LeaderUnreachable(
                    f"the nodes name {unreachable} as leader but it cannot be reached "
                    "(an election is probably under way)")
            failed = CredentialsRefused if refused else ConnectionFailed
            raise failed("could not reach any node: " + "; ".join(dict.fromkeys(errors)))
        if fallback is not None and fallback is not conn:
            await fallback.aclose()
        return conn

    async def _open(self, addr: str, errors: list[str],
                    refused: list[str]) -> Connection | None:
        with trio.move_on_after(self.connect_timeout):
            try:
                return await Connection.open(addr, self.security)
            except OSError as exc:
                errors.append(f"{addr}: {failure_reason(exc)}")
                if isinstance(exc, AuthRefused) and exc.credentials_refused:
                    refused.append(addr)
                return None
        errors.append(f"{addr}: connect timed out")
        return None

    async def _leader_of(self, conn: Connection, errors: list[str]) -> str | None:
        """The leader's client address as ``conn``'s node knows it ("" if none); None if
        the node did not answer in time."""
        with trio.move_on_after(self.connect_timeout):
            try:
                reply = await conn.request("INFO", "raft")
            except TRANSPORT_ERRORS as exc:
                errors.append(f"{conn.addr}: {exc}")
                return None
            if isinstance(reply, ErrorReply):
                return ""
            return parse_info(reply).get("leader_client_addr", "")
        errors.append(f"{conn.addr}: no answer to INFO raft")
        return None


def connect(endpoints: str | Iterable[str] | None = None, **options: Any) -> Client:
    """A client for ``endpoints`` (``"h:p,h:p"`` or a list; default 127.0.0.1:7001-7003).

    ``async with connect(...) as kv`` connects at once (one round through the endpoints,
    ``ConnectionFailed`` if none answers; ``eager=False`` defers it to the first call).
    """
    return Client(endpoints, **options)

