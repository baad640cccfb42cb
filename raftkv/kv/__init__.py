"""The deterministic key-value state machine every node applies from the Raft log.

``KVStateMachine`` holds the map; ``encode_entry``/``decode_command`` define a log entry's
data; ``lookup``/``check_arity``/``validate`` are the command table the client port uses
to route a command (``write`` through the log, ``read`` after a ReadIndex) and to reject
malformed ones before they are proposed.
"""

from .codec import decode_command, decode_entry, encode_entry
from .commands import (
    COMMANDS,
    MAX_TRANSACTION_COMMANDS,
    READ,
    SPECS,
    WRITE,
    CommandSpec,
    Reply,
    check_arity,
    check_call,
    check_once,
    decode_exec,
    encode_exec,
    exec_of,
    legacy_form,
    lookup,
    unbuilt_error,
    validate,
)
from .errors import KVDecodeError
from .glob import stringmatch
from .machine import KVStateMachine
from .state import (
    KVState,
    decode_snapshot,
    decode_snapshot_stream,
    encode_snapshot,
    snapshot_pieces,
)

__all__ = [
    "COMMANDS",
    "MAX_TRANSACTION_COMMANDS",
    "READ",
    "SPECS",
    "WRITE",
    "CommandSpec",
    "KVDecodeError",
    "KVState",
    "KVStateMachine",
    "Reply",
    "check_arity",
    "check_call",
    "check_once",
    "decode_command",
    "decode_entry",
    "decode_exec",
    "decode_snapshot",
    "decode_snapshot_stream",
    "encode_entry",
    "encode_exec",
    "encode_snapshot",
    "exec_of",
    "legacy_form",
    "lookup",
    "snapshot_pieces",
    "stringmatch",
    "unbuilt_error",
    "validate",
]
