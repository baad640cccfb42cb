"""What a log entry's data holds: one command, stamped with the leader's clock.

Two layouts, both msgpack arrays:

* ``[stamp_ms, name, arg, ...]``: written since expiry exists. ``stamp_ms`` is the leader's
  wall-clock time in milliseconds when it proposed the entry (an int); the state machine's
  "now" is the highest stamp it has applied, so every replica expires keys identically.
* ``[name, arg, ...]``: entries written by earlier versions (no stamp). They still apply,
  with the state machine's current "now".
* ``[stamp_ms, level, name, arg, ...]``: a form gated at feature ``level`` (an int from 1,
  features.py), written only once every member reads it. Releases before the gate decode
  it as corrupt (never sent to them); a release whose level is lower stops on it
  (``decode_entry_level``'s caller) rather than skip it.

The command is stored exactly as the client sent it (name first, any case), so applying
it later needs nothing but the state machine, and every node decodes the same arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from .errors import KVDecodeError

_ArgBytes = (bytes, bytearray, memoryview)
# A stamp is a non-negative int64 number of milliseconds since the Unix epoch.
MAX_STAMP = 2**63 - 1
MAX_LEVEL = 2**16  # as commands.MAX_LEVEL (this module imports nothing of the table)
# One packer for every entry: ``msgpack.packb`` builds a Packer per call, about two thirds
# of an entry's encoding (a proposal each; issue 15). Same bytes. Shared by threads: packing
# bytes and ints runs no Python code, so one call is not interleaved with another.
_pack = msgpack.Packer(use_bin_type=True).pack


def encode_entry(args: Sequence[bytes], stamp: int | None = None, level: int = 0) -> bytes:
    """The log-entry bytes of ``args`` (a non-empty list of byte strings), stamped if given;
    ``level`` (a stamped entry's): the feature level its form needs, 0 for none."""
    if not args:
        raise ValueError("a command has at least its name")
    for arg in args:
        if not isinstance(arg, _ArgBytes):
            raise TypeError(f"command arguments are bytes, not {type(arg).__name__}")
    if stamp is None:
        return _pack(list(args))
    if type(stamp) is not int or not 0 <= stamp <= MAX_STAMP:
        raise ValueError(f"a stamp is a non-negative int64, not {stamp!r}")
    if level:
        if type(level) is not int or not 0 < level < MAX_LEVEL:
            raise ValueError(f"a feature level is 1 .. {MAX_LEVEL - 1}, not {level!r}")
        return _pack([stamp, level, *args])
    return _pack([stamp, *args])


def decode_entry(data: bytes) -> tuple[int | None, list[bytes]]:
    """The (stamp or None, arguments) of a log entry; ``KVDecodeError`` if it is not one."""
    stamp, _, args = decode_entry_level(data)
    return stamp, args


def decode_entry_level(data: bytes) -> tuple[int | None, int, list[bytes]]:
    """The (stamp or None, feature level or 0, arguments) of a log entry; ``KVDecodeError``
    if it is not one."""
    try:
        items = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several types for the many ways bytes are bad
        raise KVDecodeError(f"command is not valid msgpack ({exc!r})") from None
    if type(items) is not list or not items:
        raise KVDecodeError("command is not a non-empty msgpack array")
    stamp = None
    if type(items[0]) is int:
        stamp = items[0]
        if not 0 <= stamp <= MAX_STAMP:
            raise KVDecodeError(f"stamp {stamp} out of range")
        items = items[1:]
        if not items:
            raise KVDecodeError("stamped entry holds no command")
    level = 0
    if type(items[0]) is int and stamp is not None:
        level = items[0]
        if not 0 < level < MAX_LEVEL:
            raise KVDecodeError(f"feature level {level} out of range")
        items = items[1:]
        if not items:
            raise KVDecodeError("entry holds a feature level and no command")
    for arg in items:
        if type(arg) is not bytes:
            raise KVDecodeError(f"command argument is {type(arg).__name__}, not bin")
    return stamp, level, items


def decode_command(data: bytes) -> list[bytes]:
    """The arguments in a log entry's ``data`` (its stamp dropped)."""
    return decode_entry(data)[1]
