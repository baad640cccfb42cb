"""``Node.submit`` of a plain write (``CHECKS``: no internal form, SETRANGE, script or
EXEC) runs only the checks that can refuse it, yet answers exactly what ``Node.check``
answers, for every refusal, through the same ``_checked`` (lead50: a second, shorter copy
of it for plain writes would skip a check added to the first); and its entry is the one
``entry_data`` builds (p16: each skipped check lowercased the name again, a pipelined SET's
share on a saturated leader)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from raftkv.kv import COMMANDS, decode_entry, lookup
from raftkv.kv import commands as kv_commands
from raftkv.node import node as node_module
from raftkv.node.driver import CoreDriver
from raftkv.node.memory import MemoryGuard
from raftkv.node.node import CHECKS, Node
from raftkv.node.pending import Pending
from raftkv.testing import idle_node

LIMIT = 4096  # --max-request-bytes here


def node() -> Node:
    return idle_node(max_request_bytes=LIMIT, max_keys_per_command=8)


REFUSED = [
    [b"INCR"],  # arity
    [b"INCR", b"k", b"j"],
    [b"SET", b"k", b"v", b"EX", b"soon"],  # syntax
    [b"SET", b"k", b"v", b"NX", b"XX"],
    [b"INCRBY", b"k", b"one"],
    [b"MSET", b"a", b"1", b"b"],
    [b"DEL", *[b"k%d" % i for i in range(9)]],  # --max-keys-per-command
    [b"SET", b"k", b"v" * LIMIT],  # --max-request-bytes
]


@pytest.mark.parametrize("args", REFUSED, ids=lambda a: b" ".join(a)[:40].decode("latin-1"))
def test_every_refusal_of_check_is_submit_s(args: list[bytes]) -> None:
    n = node()
    expected = n.check(args)
    checks = CHECKS[lookup(args[0]).name]
    assert expected is not None and checks.write and not checks.entry and not checks.scripts
    got = n.submit(args)
    assert got.done and got.value == expected


def plain(name: str) -> bool:
    checks = CHECKS[name]
    return checks.write and not checks.entry and not checks.scripts


def test_plain_writes_leave_out_what_their_skipped_checks_refuse() -> None:
    assert plain("set") and plain("incr") and plain("del")
    for name in ("setrange", "eval", "evalsha", "exec", "once", "budget", "member_level",
                 "expired", "get"):
        assert not plain(name)
    assert all(COMMANDS[name].is_write and not COMMANDS[name].internal
               for name in COMMANDS if plain(name))


@pytest.mark.parametrize("args", [[b"SET", b"k", b"v"], [b"INCR", b"k"], [b"GET", b"k"],
                                  [b"SETRANGE", b"k", b"0", b"v"], [b"EVAL", b"return 1", b"0"]])
def test_a_check_of_check_is_a_check_of_submit_for_every_command(
        args: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """One ``_checked`` for every command: whatever it refuses, ``submit`` refuses, a plain
    write included (a check added to it later cannot be skipped by a copy of its list)."""
    n = node()
    refusal = node_module.ErrorReply("ERR a check added later")
    real = Node._checked

    def later(self: Node, *a: object, **k: object) -> object:
        checked = real(self, *a, **k)  # type: ignore[arg-type]
        return refusal if type(checked) is bool else checked

    monkeypatch.setattr(Node, "_checked", later)
    assert n.check(args) is refusal
    assert n.submit(args).value is refusal


def test_a_plain_write_skips_the_checks_that_cannot_refuse_it(monkeypatch) -> None:
    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("asked of a plain write")

    n = node()
    for name in ("unbuilt_error", "runs_scripts"):
        monkeypatch.setattr(node_module, name, never)
    monkeypatch.setattr(n.kv, "growth_error", never)
    monkeypatch.setattr(kv_commands, "decode_exec", never)
    n.stopping = True  # (no core to propose to: this answer comes after every check)
    assert n.submit([b"SET", b"k", b"v"]).value == node_module.SHUTTING_DOWN


def test_over_maxmemory_a_growing_plain_write_is_refused_and_a_shrinking_one_is_not() -> None:
    n = node()
    n.memory = MemoryGuard(1, measure=lambda: 2)
    grow = [b"INCR", b"k"]
    assert n.check(grow) is not None
    assert n.submit(grow).value == n.check(grow)
    shrink = [b"DEL", b"k"]
    assert n.check(shrink) is None
    n.stopping = True
    assert n.submit(shrink).value == node_module.SHUTTING_DOWN


class Core:
    """A leader's core that records proposals and has no message to send early."""

    role = node_module.Role.LEADER

    def __init__(self) -> None:
        self.proposed: list[bytes] = []

    def propose(self, data: bytes) -> tuple[int, int]:
        self.proposed.append(data)
        return len(self.proposed), 1

    def take_early(self) -> list[object]:
        raise AssertionError("a proposal asked for early messages")


def leader(monkeypatch: pytest.MonkeyPatch) -> Node:
    """``node()`` as leader, a Ready in hand (its fsync running), the ready loop asleep."""
    n = node()
    n.core = Core()  # type: ignore[assignment]
    n.membership = SimpleNamespace(removed=lambda: False)  # type: ignore[assignment]
    n.driver = CoreDriver(n.core, *[None] * 11, on_forward_request=print,  # type: ignore[arg-type]
                          unpark=print)
    n.driver._in_ready = True
    return n


def submit(n: Node, args: list[bytes]) -> Pending:
    async def run() -> Pending:
        return n.submit(args)

    return trio.run(run)


def test_a_plain_write_s_entry_is_entry_data_s(monkeypatch: pytest.MonkeyPatch) -> None:
    n = leader(monkeypatch)
    args = [b"SET", b"k", b"v", b"PX", b"100"]
    submit(n, args)
    assert decode_entry(n.core.proposed[0])[1] == args  # type: ignore[attr-defined]
    assert decode_entry(n.entry_data(args))[1] == args


def test_a_proposal_wakes_the_ready_loop_without_asking_for_early_messages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``RaftCore.propose`` queues no message: a proposal made while a Ready is in hand
    has nothing to send early (``CoreDriver.proposed``), a write of any kind."""
    n = leader(monkeypatch)
    for args in ([b"SET", b"k", b"v"], [b"SETRANGE", b"k", b"0", b"v"]):
        n.driver._wake = trio.Event()
        assert not submit(n, args).done
        assert n.driver._wake.is_set()
