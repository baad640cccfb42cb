"""The leader's checks before it proposes a write are made once (tidy17, issue 15): whether
the entry runs scripts (so it carries the --script-budget) is decided where the command is
checked, not asked again for every proposal, and an EXEC's payload is decoded once by all
the checks before it is proposed (validate, unbuilt_error, growth_error, entry_cost and
runs_scripts decoded it up to five times). The answer stays the same on every path: a
client's write, RAFT ONCE, a follower's forward and a write parked until a leader is known.
"""

from __future__ import annotations

from types import SimpleNamespace

import msgpack
import pytest

from raftkv.kv import KVStateMachine, codec, commands, encode_exec, entry_cost, key_cap
from raftkv.kv.features import BUDGET, runs_scripts
from raftkv.node import node as node_module
from raftkv.node.forwarding import Forwarder
from raftkv.node.node import Node
from raftkv.raft import NotLeader, Role
from raftkv.testing import idle_node
from wire.raft import ForwardRequest

EVAL = [b"EVAL", b"return 1", b"0"]
SCRIPTED = [
    EVAL,
    [b"evalsha", b"a" * 40, b"0"],
    [b"EXEC", encode_exec([], [[b"SET", b"k", b"v"], EVAL])],
    [b"EXEC", encode_exec([], [[b"EVAL_RO", b"return 1", b"0"]])],
    [b"once", b"1", b"1", *EVAL],
    [b"once", b"1", b"1", b"EXEC", encode_exec([], [EVAL])],
]
PLAIN = [
    [b"SET", b"k", b"v"],
    [b"EXEC", encode_exec([], [[b"SET", b"eval", b"evalsha"]])],  # ("val" in it: decoded)
    [b"once", b"1", b"1", b"SET", b"k", b"v"],
    [b"once", b"1", b"1", b"EXEC", encode_exec([], [[b"INCR", b"n"]])],
]


class Leader:
    """The core's part a proposal meets: a leader of a one-member configuration that keeps
    what it is asked to propose."""

    def __init__(self, members: object) -> None:
        self.role, self.leader_id, self.term, self.last_index = Role.LEADER, 1, 1, 0
        self.cluster_config = members
        self.proposed: list[list[bytes]] = []

    def propose(self, data: bytes) -> tuple[int, int]:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        self.proposed.append(codec.decode_entry(data)[1])
        return len(self.proposed), 1

    def entries_after(self, index: int) -> list[object]:
        return []


def leader() -> tuple[Node, Leader]:
    n = idle_node()
    members = SimpleNamespace(members=[SimpleNamespace(id=1)])
    n.applier.applied_config = members  # type: ignore[assignment]
    n.kv.keep_members([1])
    n.kv.apply(codec.encode_entry([b"member_level", b"1", b"1"], 1))  # the gate is open
    core = Leader(members)
    n.core = core  # type: ignore[assignment]
    n.driver = SimpleNamespace(wake=lambda: None, proposed=lambda: None)  # type: ignore[assignment]
    n.membership = SimpleNamespace(removed=lambda: False)  # type: ignore[assignment]
    return n, core


def submit(n: Node, args: list[bytes]) -> None:
    if args[0] == b"once":
        n.submit_once(args, commands.lookup(args[3]))
    else:
        n.submit(args)


@pytest.mark.parametrize("args", SCRIPTED + PLAIN)
async def test_a_proposal_carries_the_budget_iff_it_runs_scripts_on_every_path(
        args: list[bytes]) -> None:
    budgeted = args in SCRIPTED
    n, core = leader()
    submit(n, list(args))  # a client's write (or RAFT ONCE)

    fwd = Forwarder(1, n.settings, core, SimpleNamespace(send=lambda m: None),  # type: ignore
                    n.requests, n.stats)
    n.forwarder = fwd
    n.on_forward_request(ForwardRequest(term=1, src=2, dst=1, req_id=1, args=tuple(args)))

    core.role, core.leader_id = Role.FOLLOWER, 0  # no leader known: it waits, parked
    submit(n, list(args))
    assert len(n.requests.parked) == 1
    core.role, core.leader_id = Role.LEADER, 1
    n._unpark()

    assert len(core.proposed) == 3
    for entry in core.proposed:
        assert (entry[0] == BUDGET) is budgeted, entry
        assert entry[2 if budgeted else 0:] == args


async def test_a_write_is_not_asked_again_whether_it_runs_scripts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    n, core = leader()
    asked: list[list[bytes]] = []
    real = node_module.runs_scripts
    monkeypatch.setattr(node_module, "runs_scripts",
                        lambda a, d=None: asked.append(a) or real(a, d))
    n.submit([b"SET", b"k", b"v"])
    n.submit([b"INCR", b"n"])
    assert len(core.proposed) == 2 and asked == []  # (a SET cannot run scripts)
    n.submit(list(EVAL))
    assert core.proposed[2][0] == BUDGET and len(asked) == 1  # asked once, by its check


async def test_an_exec_is_decoded_once_before_it_is_proposed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Every check that decodes: validate, unbuilt_error, growth_error (a SETRANGE),
    # entry_cost (an APPEND), runs_scripts ("val" in it).
    n, core = leader()
    payload = encode_exec([], [[b"APPEND", b"k", b"x"], [b"SETRANGE", b"k", b"1", b"y"],
                               EVAL])
    decoded: list[bytes] = []
    real = msgpack.unpackb

    def counting(data: bytes, **kwargs: object) -> object:
        if data == payload:
            decoded.append(data)
        return real(data, **kwargs)

    monkeypatch.setattr(commands.msgpack, "unpackb", counting)
    n.submit([b"EXEC", payload])
    assert len(decoded) == 1 and core.proposed[0][0] == BUDGET
    n.submit_once([b"once", b"1", b"1", b"EXEC", payload], commands.lookup(b"EXEC"))
    assert len(decoded) == 2 and core.proposed[1][0] == BUDGET
    n.submit([b"EXEC", payload])  # a new check: a new decode (none is kept past it)
    assert len(decoded) == 3
    n.forwarder = Forwarder(1, n.settings, core, SimpleNamespace(send=lambda m: None),  # type: ignore
                            n.requests, n.stats)
    n.on_forward_request(ForwardRequest(term=1, src=2, dst=1, req_id=1,  # a follower's
                                        args=(b"EXEC", payload)))
    assert len(decoded) == 4 and core.proposed[3][0] == BUDGET


def test_the_kv_checks_keep_no_decode_between_calls() -> None:
    """The decode is handed to each check (``exec_of``), not kept in the kv layer: a check
    called without it decodes the payload it is given, whatever was checked before."""
    assert not hasattr(commands, "_SHARED") and not hasattr(commands, "shared_exec")
    first = encode_exec([], [[b"SET", b"a", b"1"]])
    one = commands.exec_of([b"EXEC", first])
    assert commands.decode_exec(first) is not one and commands.decode_exec(first) == one
    assert commands.exec_of([b"once", b"1", b"1", b"exec", first]) == one
    assert commands.exec_of([b"GET", first]) is None


@pytest.mark.parametrize("check", [
    lambda args, d: commands.validate(args, d),
    lambda args, d: commands.unbuilt_error(args, d),
    lambda args, d: key_cap.refusal(args, 1, d),
    lambda args, d: runs_scripts(args, d),
    lambda args, d: entry_cost.refusal(KVStateMachine(), args, copy_limit=1, walk_limit=1,
                                       decoded=d),
    lambda args, d: KVStateMachine().growth_error(args, 1, d),
])
def test_a_check_given_the_decoded_exec_does_not_decode_it_again(
        check, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = encode_exec([], [[b"SETRANGE", b"k", b"5", b"xy"], [b"APPEND", b"k", b"x"],
                               [b"SET", b"j", b"1"], EVAL])
    for args in ([b"EXEC", payload], [b"once", b"1", b"1", b"EXEC", payload]):
        decoded = commands.exec_of(args)
        expected = check(args, None)  # (decoded by the check itself)

        def never(*_: object, **__: object) -> object:
            raise AssertionError("decoded again")

        monkeypatch.setattr(commands.msgpack, "unpackb", never)
        assert check(args, decoded) == expected
        monkeypatch.undo()
