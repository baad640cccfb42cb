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
    reply = kv.apply(encode_entry(wrap(entry, 50_000), T, 1))
    assert reply == [ErrorReply("ERR Script exceeded the instruction budget (50000 "
                                "instructions)")]
