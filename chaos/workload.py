"""The chaos suite's clients: concurrent trio tasks over the client port, every operation
recorded (invoke and complete times, outcome) in the history format of ``chaos.history``.

Each client owns one connection to one node (clients are spread over the nodes, so
followers' forwarding is exercised), speaking RESP2 through ``wire.resp.encode_command`` and
``wire.resp_reply.ReplyParser``: deliberately not the client library, whose retries would
hide what the checker must see. A small key set, unique written values (so a read names the
write it saw), reads, writes and CAS.

Outcomes: a reply is ``ok``; ``-TRYAGAIN`` means definitely not applied (``fail``); a connect
that fails means the command never left (``fail``); ``-UNKNOWN``, a timeout or a connection
lost after sending are ``info`` (it may or may not have happened). After an ``info`` the
client drops its connection and continues as a new process id, as Jepsen does: a process
never has two operations in flight.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from chaos.history import Op, Value
from client.connection import TRANSPORT_ERRORS as LOST  # what a broken connection raises
from client.connection import Connection
from client.security import Security
from client.security import from_env as security_from_env
from raftkv.probe import parse_info
from wire.reply import ErrorReply, SimpleString

Addr = tuple[str, int]


@functools.cache
def client_security() -> Security | None:
    """TLS and AUTH from RAFTKV_CACERT/RAFTKV_PASSWORD (set by ``run --tls``), read once."""
    return security_from_env()


async def info_raft(addr: Addr, patience: float = 0.5) -> dict[str, str] | None:
    """``INFO raft`` of one node as a dict, or None if it does not answer in time."""
    conn = None
    try:
        with trio.fail_after(patience):
            conn = await Connection.open_host(*addr, security=client_security())
            text = await conn.request("INFO", "raft")
    except (*LOST, trio.TooSlowError):
        return None
    finally:
        if conn is not None:
            await conn.aclose()
    if not isinstance(text, bytes):
        return None
    return parse_info(text)


async def find_leader(addrs: Mapping[int, Addr], patience: float = 0.5) -> int | None:
    """The node that says it leads in the highest term (asked concurrently), or None."""
    infos: dict[int, dict[str, str] | None] = {}

    async def ask(node: int, addr: Addr) -> None:
        infos[node] = await info_raft(addr, patience)

    async with trio.open_nursery() as nursery:
        for node, addr in addrs.items():
            nursery.start_soon(ask, node, addr)
    leaders = [(int(i.get("term", 0)), n) for n, i in infos.items()
               if i and i.get("role") == "leader"]
    return max(leaders)[1] if leaders else None


@attrs.frozen
class Mix:
    """Shares of reads and writes; the rest are CAS. ``expiring``: the share of writes sent
    as ``SET k v PX ms`` with a TTL drawn from ``ttl_ms`` (the checker's expiry model, see
    chaos.linearizability). At 0 (the default) no random number is drawn for it, so the
    schedules of runs without TTLs are unchanged."""

    read: float = 0.5
    write: float = 0.3
    expiring: float = 0.0
    ttl_ms: tuple[int, int] = (200, 2000)


@attrs.frozen
class WorkloadConfig:
    clients: int = 10
    keys: int = 8
    rate: float = 10.0  # operations per second per client (on average)
    op_timeout: float = 2.5
    mix: Mix = attrs.field(factory=Mix)
    # A cluster the run attaches to (--net docker) keeps its data between runs, while the
    # checkers assume every key starts missing: such runs use a prefix of their own.
    key_prefix: str = "k"

    @property
    def key_names(self) -> list[str]:
        return [f"{self.key_prefix}{i}" for i in range(self.keys)]


class Recorder:
    """The history being written, with counters for the progress line."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.now = clock
        self.ops: list[Op] = []
        self.counts: Counter[str] = Counter()
        self.latest: dict[str, int] = {}  # last acknowledged value written per key
        self._value = 0

    def next_value(self) -> int:
        self._value += 1
        return self._value

    def add(self, op: Op) -> None:
        self.ops.append(op)
        self.counts[op.outcome] += 1
        if op.outcome == "ok" and op.writes:
            self.latest[op.key] = op.written


def classify(f: str, reply: Any) -> tuple[str, Value, bool | None, str | None]:
    """(outcome, read value, cas result, error) for one reply."""
    if isinstance(reply, ErrorReply):
        text = reply.text
        if text.startswith("TRYAGAIN"):
            return "fail", None, None, text
        if text.startswith("UNKNOWN"):
            return "info", None, None, text
        # Anything else is unexpected: a read observed nothing, a write may have happened.
        return ("fail" if f == "read" else "info"), None, None, f"unexpected: {text}"
    if f == "read" and (reply is None or isinstance(reply, bytes)):
        return "ok", _value(reply), None, None
    if f == "write" and isinstance(reply, SimpleString) and reply.text == "OK":
        return "ok", None, None, None
    if f == "cas" and reply in (0, 1) and not isinstance(reply, bool):
        return "ok", None, reply == 1, None
    return ("fail" if f == "read" else "info"), None, None, f"unexpected reply {reply!r}"


def _value(raw: bytes | None) -> Value:
    if raw is None:
        return None
    text = raw.decode(errors="replace")
    return int(text) if text.isdigit() else text


class Client:
    """One client task: its node, its connection, its process id, what it last saw."""

    def __init__(self, index: int, node: int, addr: Addr, config: WorkloadConfig,
                 recorder: Recorder, rng: random.Random) -> None:
        self.index = index
        self.process = index
        self.node = node
        self.addr = addr
        self.config = config
        self.rec = recorder
        self.rng = rng
        self.known: dict[str, Value] = {}
        self.conn: Connection | None = None

    def _choose(self) -> tuple[str, str, Any, tuple[Any, ...]]:
        cfg, rng = self.config, self.rng
        key = rng.choice(cfg.key_names)
        r = rng.random()
        if r < cfg.mix.read:
            return key, "read", None, ("GET", key)
        expected = self.known.get(key) if rng.random() < 0.7 else self.rec.latest.get(key)
        if r < cfg.mix.read + cfg.mix.write or expected is None:
            v = self.rec.next_value()
            if cfg.mix.expiring > 0 and rng.random() < cfg.mix.expiring:
                ms = rng.randint(*cfg.mix.ttl_ms)
                return key, "write", v, ("SET", key, str(v), "PX", str(ms))
            return key, "write", v, ("SET", key, str(v))
        new = self.rec.next_value()
        return key, "cas", (expected, new), ("CAS", key, str(expected), str(new))

    async def _drop_connection(self) -> None:
        if self.conn is not None:
            await self.conn.aclose()
            self.conn = None

    async def step(self) -> Op:
        """Run one operation and record it."""
        key, f, value, args = self._choose()
        invoke = self.rec.now()
        deadline = trio.current_time() + self.config.op_timeout
        if self.conn is None:
            try:
                with trio.fail_at(deadline):
                    self.conn = await Connection.open_host(*self.addr, security=client_security())
            except (*LOST, trio.TooSlowError) as exc:
                return self._record(key, f, value, invoke, "fail", None,
                                    f"connect: {_describe(exc)}")
        broken = True
        try:
            with trio.fail_at(deadline):
                reply = await self.conn.request(*args)
        except trio.TooSlowError:
            outcome, read, swapped, error = "info", None, None, "timeout"
        except LOST as exc:
            outcome, read, swapped, error = "info", None, None, _describe(exc)
        else:
            broken = False
            outcome, read, swapped, error = classify(f, reply)
        if broken:  # a reply may still be on its way: never read it as the next one's
            await self._drop_connection()
        return self._record(key, f, read if f == "read" else value, invoke, outcome, swapped,
                            error, _ttl(args))

    def _record(self, key: str, f: str, value: Any, invoke: float, outcome: str,
                swapped: bool | None, error: str | None, ttl: float | None = None) -> Op:
        complete = max(self.rec.now(), invoke)
        op = Op(self.process, key, f, value, invoke, complete, outcome,  # type: ignore[arg-type]
                swapped if f == "cas" and outcome == "ok" else None, f"n{self.node}", error,
                ttl if outcome != "fail" else None)
        self.rec.add(op)
        if outcome == "ok":
            self.known[key] = op.value if f == "read" else (
                op.written if op.writes else self.known.get(key))
        if outcome == "info":
            self.process += self.config.clients  # a new process: this one may be stuck
        return op

    async def run(self, stop: trio.Event) -> None:
        try:
            while not stop.is_set():
                op = await self.step()
                pause = self.rng.uniform(0, 2 / self.config.rate)
                if op.outcome == "fail":
                    pause = max(pause, 0.1)  # no leader, or the node is down: do not spin
                await trio.sleep(pause)
        finally:
            with trio.CancelScope(shield=True):
                await self._drop_connection()


def _ttl(args: tuple[Any, ...]) -> float | None:
    """The TTL in seconds of a ``SET k v PX ms`` (None for anything else)."""
    if len(args) == 5 and args[0] == "SET" and args[3] == "PX":
        return int(args[4]) / 1000
    return None


def spread(clients: int, nodes: Sequence[int]) -> list[int]:
    """Client index -> node, round robin, so every node gets clients."""
    return [nodes[c % len(nodes)] for c in range(clients)]


async def final_reads(addr_of: Callable[[], Awaitable[Addr | None]], keys: Sequence[str],
                      patience: float = 30.0) -> dict[str, Value]:
    """One ok read of every key (through whatever node ``addr_of`` names at each try)."""
    out: dict[str, Value] = {}
    with trio.move_on_after(patience):
        for key in keys:
            while key not in out:
                addr = await addr_of()
                if addr is None:
                    await trio.sleep(0.2)
                    continue
                try:
                    with trio.fail_after(2.0):
                        conn = await Connection.open_host(*addr, security=client_security())
                        try:
                            reply = await conn.request("GET", key)
                        finally:
                            await conn.aclose()
                except (*LOST, trio.TooSlowError):
                    await trio.sleep(0.2)
                    continue
                outcome, value, _, _ = classify("read", reply)
                if outcome == "ok":
                    out[key] = value
                else:
                    await trio.sleep(0.2)
    return out


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
