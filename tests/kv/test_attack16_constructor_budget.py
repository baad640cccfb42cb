"""attack16: a table constructor allocates what its items say in a few VM instructions.

``{nil, nil, ... (250 nils), i}`` is NEWTABLE (the array sized at once), a LOADNIL and a
SETLIST per 50 items: ~12 instructions allocate and clear 251 slots (4 KiB), which the
collector then frees. The budget counts instructions, so within the default 1,000,000
units a loop of such constructors holds a replica ~10x as long as the budget-spending
loop the budget was sized on: 49 ms of CPU vs 5 ms here (unloaded), and live, 3 nodes at
cluster level 1, one EVAL held every node's loop 237-242 ms (``loop_lag_max_ms``, median
of 4 rounds alternated with the spending loop: 7-19 ms; ratio 13-33x per node; load ~7),
longer than the 150 ms election timeout. Strings (``string.rep``) and C loops are charged
per byte; the slots a constructor allocates are not. 20,000 such constructors allocate
~80 MB of slots (5,000,000 units at the sandbox's 16 bytes a unit): the budget must trip.
"""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.kv.features import wrap
from wire.reply import ErrorReply

T = 1_700_000_000_000
NILS = ", ".join(["nil"] * 250)
BODY = ("local x = 0 for i = 1, 20000 do local t = {" + NILS + ", i} x = x + 1 end "
        "return x")


def test_the_slots_a_table_constructor_allocates_are_charged() -> None:
    kv = KVStateMachine()
    kv.keep_members((1, 2, 3))
    reply = kv.apply(encode_entry(wrap([b"EVAL", BODY.encode(), b"0"], 1_000_000), T, 1))
    assert isinstance(reply, ErrorReply) and "instruction budget" in reply.text, reply
