"""attack16: a table constructor allocates what its items say in a few VM instructions.

``{nil, nil, ... (250 nils), i}`` is NEWTABLE (the array sized at once), a LOADNIL and a
SETLIST per 50 items: ~12 instructions allocate and clear 251 slots (4 KiB), which the
collector then frees. The budget counted instructions only, so within the default
1,000,000 units a loop of such constructors held a replica ~10x as long as the
budget-spending loop the budget was sized on: 49 ms of CPU vs 5 ms (unloaded), and live,
3 nodes at cluster level 1, one EVAL held every node's loop 237-242 ms. The budget form
now charges what a script allocates (scripts.ALLOC_COST per KiB); the old form is
unchanged, forever (entries in logs apply so).
"""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.features import MAX_BUDGET, wrap
from raftkv.kv.scripts import HOOK_STEP
from wire.reply import ErrorReply

T = 1_700_000_000_000
NILS = ", ".join(["nil"] * 250)
BODY = ("local x = 0 for i = 1, 20000 do local t = {" + NILS + ", i} x = x + 1 end "
        "return x")


def _apply(args: list[bytes]) -> tuple[object, int]:
    kv = KVStateMachine()
    kv.keep_members((1, 2, 3))
    reply = kv.apply(encode_entry(args, T, 1))
    return reply, kv._scripting.last_cost


def test_the_slots_a_table_constructor_allocates_are_charged() -> None:
    # 20,000 constructors allocate ~80 MB: ~2,500,000 units at 32 a KiB, past the default.
    reply, _ = _apply(wrap([b"EVAL", BODY.encode(), b"0"], 1_000_000))
    assert isinstance(reply, ErrorReply) and "instruction budget" in reply.text, reply


def test_a_script_that_churns_memory_is_collected_not_stopped_at_the_cap() -> None:
    # The collector is stopped for a budget-form run, so the hook collects: 80 MB of
    # garbage in all must not reach the 64 MiB cap (a budget large enough to pay for it).
    reply, cost = _apply(wrap([b"EVAL", BODY.encode(), b"0"], MAX_BUDGET))
    assert reply == 20000
    assert cost > 2_000_000  # the allocation was charged, not only the ~300,000 steps


def test_an_old_form_entry_is_charged_instructions_only() -> None:
    # No ``budget`` recorded: 10,000,000 units, the hook's steps only, as before.
    reply, cost = _apply([b"EVAL", BODY.encode(), b"0"])
    assert reply == 20000
    assert cost % HOOK_STEP == 0 and cost < 1_000_000


def test_the_charge_is_the_same_in_every_runtime() -> None:
    # Each run has a fresh runtime with its own string hash seed: the heap's growth, and so
    # the units, depend only on the script (replicas agree on a script near its budget).
    body = (b"local t = {} for i = 1, 3000 do t['k' .. i] = {i, tostring(i), {a = i}} end "
            b"return #t")
    costs = {_apply(wrap([b"EVAL", body, b"0"], MAX_BUDGET))[1] for _ in range(4)}
    assert len(costs) == 1
