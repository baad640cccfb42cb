"""Redis's error replies, word for word (Redis 7 source), and the one exception of this package.

Clients and tests match these texts exactly, so they live in one place. Texts that name a
command or echo arguments are built by functions that copy Redis's C formatting: ``%s`` stops
at the first NUL byte, ``%.128s`` cuts at 128 bytes, CR and LF become spaces.
"""

from __future__ import annotations

from wire.reply import ErrorReply


class KVDecodeError(ValueError):
    """Bytes that are not a valid log command or snapshot (corrupt or from another format)."""


SYNTAX_ERROR = ErrorReply("ERR syntax error")
NOT_INTEGER = ErrorReply("ERR value is not an integer or out of range")
INCR_OVERFLOW = ErrorReply("ERR increment or decrement would overflow")
DECR_OVERFLOW = ErrorReply("ERR decrement would overflow")
INVALID_CURSOR = ErrorReply("ERR invalid cursor")
STRING_TOO_LONG = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
NOT_FLOAT = ErrorReply("ERR value is not a valid float")
FLOAT_NAN_OR_INF = ErrorReply("ERR increment would produce NaN or Infinity")
NO_SUCH_KEY = ErrorReply("ERR no such key")
OFFSET_OUT_OF_RANGE = ErrorReply("ERR offset is out of range")
SAME_OBJECT = ErrorReply("ERR source and destination objects are the same")
DB_OUT_OF_RANGE = ErrorReply("ERR DB index is out of range")
NOSCRIPT = ErrorReply("NOSCRIPT No matching script. Please use EVAL.")


def invalid_expire(command: str) -> ErrorReply:
    """``ERR invalid expire time in 'set' command`` (the lower-case command name)."""
    return ErrorReply(f"ERR invalid expire time in '{command}' command")


def unknown_subcommand(sub: bytes, command: str) -> ErrorReply:
    """``ERR unknown subcommand 'foo'. Try OBJECT HELP.``"""
    text = _as_text(_c_text(sub, 128))
    return ErrorReply(f"ERR unknown subcommand '{text}'. Try {command.upper()} HELP.")

# Redis builds the unknown-command text from C strings into a budget of 128 bytes.
_ARGS_BUDGET = 128


def _c_text(arg: bytes, limit: int) -> bytes:
    """``%.*s`` of a C string: up to the first NUL, at most ``limit`` bytes."""
    nul = arg.find(b"\0")
    if nul >= 0:
        arg = arg[:nul]
    return arg[:limit]


def _as_text(raw: bytes) -> str:
    # An error line may not hold CR or LF (Redis maps them to spaces). Bytes that are not
    # UTF-8 become U+FFFD so any server-side encoder can send the text; ASCII stays exact.
    return raw.replace(b"\r", b" ").replace(b"\n", b" ").decode("utf-8", "replace")


def unknown_command(args: list[bytes]) -> ErrorReply:
    """``ERR unknown command 'foo', with args beginning with: 'a' 'b' `` as Redis 7 says it."""
    name = _c_text(args[0], 128) if args else b""
    parts = bytearray()
    for arg in args[1:]:
        if len(parts) >= _ARGS_BUDGET:
            break
        parts += b"'" + _c_text(arg, _ARGS_BUDGET - len(parts)) + b"' "
    text = b"ERR unknown command '" + name + b"', with args beginning with: " + bytes(parts)
    return ErrorReply(_as_text(text))


def wrong_arity(name: str) -> ErrorReply:
    """``ERR wrong number of arguments for 'get' command`` (the lower-case command name)."""
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")
