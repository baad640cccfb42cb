"""Client side of the Redis protocol: an incremental RESP2/RESP3 reply parser.

Replies become the values of ``wire.reply``: bulk string -> ``bytes``, simple string ->
``SimpleString``, error (simple or blob) -> ``ErrorReply`` (returned, not raised), null
(``$-1``, ``*-1``, ``_``) -> ``None``, integer and big number -> ``int``, array -> ``list``,
map -> ``dict``, set -> ``set``, double -> ``float``, boolean -> ``bool``, verbatim string
-> the payload ``bytes`` without its ``txt:`` prefix. Map keys and set members that are
lists become tuples (sets become frozensets, maps tuples of pairs) so they can be hashed.
Attributes (``|``) are parsed and dropped; a push (``>``) is returned as a plain ``list``,
so a caller that enables RESP3 push must tell pushes from replies by their content.
Streamed strings and aggregates (``$?``) are not supported. ``resp2=True``: a connection
that never sent ``HELLO 3`` refuses every RESP3 type as a protocol error (a hostile server's
push was otherwise a ``list`` where a ``GET`` expects bytes: attack5).
"""

from __future__ import annotations

from typing import Any, Final

from wire.chunk_buffer import ChunkBuffer
from wire.errors import ProtocolError
from wire.reply import ErrorReply, SimpleString

__all__ = ["NEED_MORE", "ReplyParser"]


class _NeedMore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE: Final = _NeedMore()
"""Returned by ``next_reply`` while no complete reply is buffered (``None`` is a reply)."""

_SMALL_INTS: dict[bytes, int] = {str(i).encode(): i for i in range(-1, 10_000)}
_SKIP = object()  # a finished attribute: not a value of its parent
_AGGREGATES = frozenset(b"*%~>|")
_BAD_FLOAT_BYTES = frozenset(b" _\t\r\n\x0b\x0c")
_RESP2 = frozenset(b"+-:$*")


def _int(line: bytes) -> int:
    v = _SMALL_INTS.get(line)
    if v is not None:
        return v
    digits = line[1:] if line[:1] == b"-" else line
    if not digits.isdigit():  # ASCII digits only; rejects "", "+1", " 1", "1_0"
        raise ProtocolError(f"Protocol error: bad integer {line[:32]!r}")
    return int(line)


def _hashable(value: Any) -> Any:
    t = type(value)
    if t is list:
        return tuple(_hashable(v) for v in value)
    if t is set:
        return frozenset(value)
    if t is dict:
        return tuple((k, _hashable(v)) for k, v in value.items())
    return value


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class ReplyParser(ChunkBuffer):
    """Incremental reply parser: ``feed(data)``, then ``next_reply()`` until ``NEED_MORE``.

    Any split of the input gives the same replies. Partly received aggregates keep their
    finished elements on a stack, so a huge reply arriving in many reads is parsed in linear
    time. Malformed input raises ``ProtocolError``; the parser is dead afterwards.
    """

    __slots__ = (
        "_need",
        "_scan",
        "_stack",
        "max_bulk_len",
        "max_depth",
        "max_line_len",
        "resp2",
    )

    def __init__(
        self,
        max_bulk_len: int = 512 * 1024 * 1024,
        max_depth: int = 64,
        max_line_len: int = 64 * 1024,
        resp2: bool = False,
    ) -> None:
        self.max_bulk_len = max_bulk_len
        self.max_depth = max_depth
        self.max_line_len = max_line_len
        self.resp2 = resp2
        super().__init__()
        self._need = 0  # stalled: retry once `buffered >= _need`
        self._scan = 0  # bytes after `_pos` already searched for CRLF
        # Open aggregates: [type byte, elements still expected, elements so far].
        self._stack: list[list[Any]] = []

    def next_reply(self) -> Any:
        """The next complete reply, or ``NEED_MORE``."""
        if self._error is not None:
            raise self._error
        if self._need:
            if self.buffered < self._need:
                return NEED_MORE
            self._need = 0
        if self._chunks:
            self._join()
        try:
            return self._parse()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _parse(self) -> Any:
        buf = self._buf
        pos = self._pos
        n = len(buf)
        stack = self._stack
        resp2 = self.resp2
        while True:
            if pos >= n:
                self._pos = pos
                self._need = 1
                return NEED_MORE
            nl = buf.find(b"\r\n", pos + self._scan)
            if nl < 0:
                if n - pos > self.max_line_len + 1:
                    raise ProtocolError("Protocol error: too big reply line")
                self._scan = max(n - pos - 1, 0)
                self._pos = pos
                self._need = n - pos + 1
                return NEED_MORE
            if nl - pos > self.max_line_len + 1:
                raise ProtocolError("Protocol error: too big reply line")
            self._scan = 0
            kind = buf[pos]
            if resp2 and kind not in _RESP2:
                raise ProtocolError(f"Protocol error: RESP3 reply type {chr(kind)!r} on a "
                                    "RESP2 connection")
            line = buf[pos + 1 : nl]
            if kind == 36 or kind == 61 or kind == 33:  # '$' '=' '!'
                length = _int(line)
                if length == -1 and kind == 36:
                    value: Any = None
                    pos = nl + 2
                else:
                    if length < 0 or length > self.max_bulk_len:
                        raise ProtocolError("Protocol error: invalid bulk length")
                    start = nl + 2
                    end = start + length
                    if end + 2 > n:
                        self._pos = pos
                        self._need = end + 2 - pos
                        return NEED_MORE
                    if buf[end : end + 2] != b"\r\n":
                        raise ProtocolError("Protocol error: bulk not followed by CRLF")
                    value = buf[start:end]
                    pos = end + 2
                    if kind == 61:
                        if length < 4 or value[3] != 58:  # ':'
                            raise ProtocolError("Protocol error: bad verbatim string")
                        value = value[4:]
                    elif kind == 33:
                        value = ErrorReply(_text(value))
            elif kind in _AGGREGATES:
                count = _int(line)
                pos = nl + 2
                if count < 0:
                    if count == -1 and kind == 42:  # '*-1': RESP2 null array
                        value = None
                    else:
                        raise ProtocolError("Protocol error: invalid aggregate length")
                elif count == 0:
                    if kind == 124:  # empty attribute
                        continue
                    value = _build(kind, [])
                else:
                    if len(stack) >= self.max_depth:
                        raise ProtocolError("Protocol error: reply nested too deeply")
                    pairs = kind == 37 or kind == 124  # '%' '|'
                    stack.append([kind, 2 * count if pairs else count, []])
                    continue
            else:
                pos = nl + 2
                if kind == 43:  # '+'
                    value = SimpleString(_text(line))
                elif kind == 45:  # '-'
                    value = ErrorReply(_text(line))
                elif kind == 58 or kind == 40:  # ':' '('
                    value = _int(line)
                elif kind == 95:  # '_'
                    if line:
                        raise ProtocolError("Protocol error: bad null")
                    value = None
                elif kind == 35:  # '#'
                    if line == b"t":
                        value = True
                    elif line == b"f":
                        value = False
                    else:
                        raise ProtocolError("Protocol error: bad boolean")
                elif kind == 44:  # ','
                    value = _float(line)
                else:
                    raise ProtocolError(f"Protocol error: unknown reply type {chr(kind)!r}")
            # Attach the finished value to the open aggregates, closing those now full.
            while stack:
                top = stack[-1]
                top[2].append(value)
                top[1] -= 1
                if top[1]:
                    break
                stack.pop()
                value = _build(top[0], top[2])
                if value is _SKIP:
                    break
            else:
                self._pos = pos
                return value


def _float(line: bytes) -> float:
    if not line or any(b in _BAD_FLOAT_BYTES for b in line):
        raise ProtocolError("Protocol error: bad double")
    try:
        return float(line)
    except ValueError:
        raise ProtocolError("Protocol error: bad double") from None


def _build(kind: int, items: list[Any]) -> Any:
    if kind == 42 or kind == 62:  # '*' '>'
        return items
    if kind == 37:  # '%'
        it = iter(items)
        return {_hashable(k): v for k, v in zip(it, it, strict=True)}
    if kind == 126:  # '~'
        return {_hashable(v) for v in items}
    return _SKIP  # '|' attribute
