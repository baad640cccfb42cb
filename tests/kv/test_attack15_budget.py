"""attack15: entries that run scripts and escape the ``budget`` form (raftkv.kv.features)."""

from __future__ import annotations

from raftkv.kv import KVStateMachine, encode_entry, encode_exec
from raftkv.kv.features import runs_scripts, wrap
from wire.reply import ErrorReply

T = 1_700_000_000_000
SPIN = [b"EVAL_RO", b"while true do end", b"0"]


def test_an_exec_holding_eval_ro_is_written_in_the_budget_form() -> None:
    # MULTI / EVAL_RO ... / EXEC is queued (server/transaction.py accepts EVAL_RO) and
    # proposed as one EXEC entry: its script runs in the apply of every replica, so the
    # leader must record its budget. runs_scripts looks for EVAL/EVALSHA only, so the
    # entry keeps the old form and its script spends 10,000,000 units, not --script-budget.
    entry = [b"EXEC", encode_exec([], [SPIN])]
    assert runs_scripts(entry)
    kv = KVStateMachine()
    kv.keep_members((1, 2, 3))
    reply = kv.apply(encode_entry(wrap(entry, 250_000), T, 1))
    assert reply == [ErrorReply("ERR Script exceeded the instruction budget (250000 "
                                "instructions)")]


def test_scripts_of_one_exec_are_charged_what_starting_each_costs() -> None:
    # Each script of an entry runs in a runtime of its own (scripts.py's _new_runtime and
    # the sandbox set up), ~0.9 ms of CPU here, but is charged only its few VM
    # instructions. One entry of 100,000 ``EVAL "return 1" 0`` applied in 91 s of CPU
    # under the 1,000,000-unit default. A client's MULTI stops at --max-keys-per-command
    # (an EVAL weighs one): live, 3 nodes at cluster level 1, MULTI + 1,000
    # ``EVAL "return 1" 0`` + EXEC held every node's loop 0.9-1.6 s (loop_lag_max_ms),
    # the budget-spending loop 2-5 ms (same cluster, alternated, 3 rounds each). So a
    # script must cost at least what starting one costs. Here at the lowest budget
    # (200,000 units, START_COST 100,000 a script), 100 scripts (~90 ms) must reach it.
    entry = [b"EXEC", encode_exec([], [[b"EVAL", b"return 1", b"0"]] * 100)]
    kv = KVStateMachine()
    kv.keep_members((1, 2, 3))
    replies = kv.apply(encode_entry(wrap(entry, 200_000), T, 1))
    assert isinstance(replies, list)
    assert any(isinstance(r, ErrorReply) and "instruction budget" in r.text for r in replies)
