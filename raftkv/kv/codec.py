"""What a log entry's data holds: one command as a msgpack array of bin strings.

The command is stored exactly as the client sent it (name first, any case), so applying
it later needs nothing but the state machine, and every node decodes the same arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from .errors import KVDecodeError

_ArgBytes = (bytes, bytearray, memoryview)


def encode_command(args: Sequence[bytes]) -> bytes:
    """The log-entry bytes of ``args`` (a non-empty list of byte strings)."""
    if not args:
        raise ValueError("a command has at least its name")
    for arg in args:
        if not isinstance(arg, _ArgBytes):
            raise TypeError(f"command arguments are bytes, not {type(arg).__name__}")
    return msgpack.packb(list(args), use_bin_type=True)


def decode_command(data: bytes) -> list[bytes]:
    """The arguments in a log entry's ``data``; ``KVDecodeError`` if it is not a command."""
    try:
        args = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several types for the many ways bytes are bad
        raise KVDecodeError(f"command is not valid msgpack ({exc!r})") from None
    if type(args) is not list or not args:
        raise KVDecodeError("command is not a non-empty msgpack array")
    for arg in args:
        if type(arg) is not bytes:
            raise KVDecodeError(f"command argument is {type(arg).__name__}, not bin")
    return args
