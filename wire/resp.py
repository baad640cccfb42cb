"""Server side of the Redis protocol: an incremental command parser and the reply encoder.

The parser mirrors Redis 7's ``processInputBuffer`` (networking.c): each command is
multibulk (RESP2 array of bulk strings) when its first byte is ``*`` and inline otherwise,
with Redis's limits and its exact protocol-error texts. Inline lines are split like Redis's
``sdssplitargs``. Deliberate differences, all of them C string artefacts or chunking
accidents that would make the result depend on how the bytes arrived:

* NUL is an ordinary byte (Redis's ``strchr``/``sdssplitargs`` stop at it).
* A line or count header longer than ``max_inline_len`` is an error even when its
  terminator arrived in the same read (Redis only notices while the terminator is missing),
  so every split of the input gives the same commands and the same error.

Like Redis, the byte after the ``\\r`` of a header and the two bytes after a bulk's payload
are skipped without being checked.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from operator import ne
from typing import Any

from wire.chunk_buffer import ChunkBuffer
from wire.errors import ProtocolError
from wire.reply import OK, Encoded, ErrorReply, Push, Replies, SimpleString, Streamed

__all__ = ["CommandParser", "encode_command", "encode_reply", "encode_reply_chunks", "split_args"]

_LLONG_MAX = 2**63 - 1
_LLONG_MIN = -(2**63)

# Header numbers seen on every command, looked up instead of validated and converted.
_SMALL_INTS: dict[bytes, int] = {str(i).encode(): i for i in range(-1, 10_000)}

_C_ISSPACE = frozenset(b" \t\n\r\x0b\x0c")
_TOKEN_END = frozenset(b" \t\n\r")
_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}

_TOO_BIG_INLINE = "Protocol error: too big inline request"
_UNBALANCED = "Protocol error: unbalanced quotes in request"
_BAD_MBULK_LEN = "Protocol error: invalid multibulk length"
_BAD_BULK_LEN = "Protocol error: invalid bulk length"
_TOO_BIG_MBULK = "Protocol error: too big mbulk count string"
_TOO_BIG_BULK = "Protocol error: too big bulk count string"
# Not a Redis text (Redis has no per-command bound, only proto-max-bulk-len per argument and
# client-query-buffer-limit for the whole input buffer): RaftKV bounds one command's size.
_TOO_BIG_REQUEST = "Protocol error: request larger than max-request-bytes ({} bytes)"


def string2ll(s: bytes) -> int | None:
    """Redis's strict ``string2ll``: optional ``-``, no leading zeros, fits a signed 64 bit."""
    v = _SMALL_INTS.get(s)
    if v is not None:
        return v
    if not s or len(s) >= 21:
        return None
    digits = s[1:] if s[0] == 45 else s  # '-'
    if not digits or not digits.isdigit() or digits[0] == 48:  # isdigit: ASCII only
        return None
    v = int(s)
    return v if _LLONG_MIN <= v <= _LLONG_MAX else None


# The fast path of a multibulk (CommandParser._parse): split at CRLF instead of reading
# each header's length and skipping that many bytes. The two parses agree whenever every
# header reads "$<len>" and the piece after it has exactly that length, since the CRLF that
# ends the piece is then the one the length points at. One ``split`` and two ``map`` calls
# do in C what the loop does per argument in Python (0.45 us an argument there, issue 19).
_BULK_HEADERS_IN: dict[bytes, int] = {b"$%d" % i: i for i in range(10_000)}
_SPLIT_MIN, _SPLIT_MAX = 3, 64  # arguments (fewer: the loop is as fast)
_SPLIT_WINDOW = 512  # bytes of the buffer it looks at (a pipeline is not copied whole)
# The multibulk headers of the commands the fast path takes that fit in 4 bytes ("*3\r\n":
# SET, ...), read with one slice and lookup instead of a search for the CR, a slice and a
# lookup. The header parse reads "*<n>" up to the CR and skips 2 bytes: the same count.
_SHORT_MBULK: dict[bytes, int] = {b"*%d\r\n" % i: i for i in range(_SPLIT_MIN, 10)}


def _expected_dollar(byte: int) -> ProtocolError:
    # addReplyErrorFormat: sdscatvprintf stops at a NUL, CR/LF become spaces.
    got = "" if byte == 0 else " " if byte in (10, 13) else chr(byte)
    return ProtocolError(f"Protocol error: expected '$', got '{got}" + ("" if byte == 0 else "'"))


def split_args(line: bytes) -> list[bytes]:
    """Split an inline command line like Redis's ``sdssplitargs``.

    Double quotes take ``\\n \\r \\t \\b \\a \\xHH`` and ``\\<any>`` escapes, single quotes only
    ``\\'``; a closing quote must be followed by whitespace or the end of the line.
    """
    if b'"' not in line and b"'" not in line and b"\x0b" not in line and b"\x0c" not in line:
        return line.split()  # bytes.split() splits on exactly " \t\n\r" here
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _C_ISSPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = False
        while True:
            if inq:
                if i >= n:
                    raise ProtocolError(_UNBALANCED)
                c = line[i]
                if (
                    c == 92
                    and i + 3 < n
                    and line[i + 1] == 120
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    cur.append(_HEX[line[i + 2]] * 16 + _HEX[line[i + 3]])
                    i += 4
                elif c == 92 and i + 1 < n:
                    cur.append(_ESCAPES.get(line[i + 1], line[i + 1]))
                    i += 2
                elif c == 34:
                    if i + 1 < n and line[i + 1] not in _C_ISSPACE:
                        raise ProtocolError(_UNBALANCED)
                    i += 1
                    break
                else:
                    cur.append(c)
                    i += 1
            elif insq:
                if i >= n:
                    raise ProtocolError(_UNBALANCED)
                c = line[i]
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    cur.append(39)
                    i += 2
                elif c == 39:
                    if i + 1 < n and line[i + 1] not in _C_ISSPACE:
                        raise ProtocolError(_UNBALANCED)
                    i += 1
                    break
                else:
                    cur.append(c)
                    i += 1
            else:
                if i >= n:
                    break
                c = line[i]
                i += 1
                if c in _TOKEN_END:
                    break
                if c == 34:
                    inq = True
                elif c == 39:
                    insq = True
                else:
                    cur.append(c)
        args.append(bytes(cur))


class CommandParser(ChunkBuffer):
    """Incremental parser of client commands (multibulk and inline, detected per command).

    ``feed(data)`` buffers bytes; ``next_command()`` returns the next complete command as a
    list of bytes, or ``None`` until more input arrives; iterating the parser drains the
    complete commands. Any split of the input gives the same commands and the same errors.
    A ``ProtocolError`` carries Redis's exact text; afterwards the parser is dead and every
    call raises it again (the server replies with it and closes, as Redis does).

    Memory stays bounded when the caller drains after each feed: unconsumed input never
    exceeds ``max(max_inline_len, max_bulk_len) + 1`` bytes (see ``buffered``) and a command
    holds at most ``max_multibulk_len`` arguments of ``max_bulk_len`` bytes, and at most
    ``max_request_len`` bytes as counted on the wire (headers and payloads; checked at each
    bulk header, so an oversized command is refused before its payload is buffered). Nothing is
    allocated ahead from a declared length. Input is kept as a bytes buffer plus a list of
    unjoined chunks; a stalled parse records what it waits for (a byte count or a
    terminator byte) and new chunks are joined only once that can have arrived, so a large
    bulk or a long line arriving in small pieces costs linear, not quadratic, time.
    """

    __slots__ = (
        "_args",
        "_bulklen",
        "_checked",
        "_left",
        "_need",
        "_scan",
        "_size",
        "_wait",
        "max_bulk_len",
        "max_inline_len",
        "max_multibulk_len",
        "max_request_len",
    )

    def __init__(
        self,
        max_inline_len: int = 64 * 1024,
        max_bulk_len: int = 512 * 1024 * 1024,
        max_multibulk_len: int = 1024 * 1024,
        max_request_len: int | None = None,
    ) -> None:
        self.max_inline_len = max_inline_len
        self.max_bulk_len = max_bulk_len
        self.max_multibulk_len = max_multibulk_len
        # None: no bound beyond the per-argument ones (Redis's behaviour).
        self.max_request_len = max_request_len
        super().__init__()
        # Stall state: retry once `buffered >= _need` or byte `_wait` is in a new chunk.
        self._need = 0
        self._wait = -1
        self._checked = 0  # chunks already searched for `_wait`
        self._scan = 0  # bytes after `_pos` already searched for the terminator
        # Multibulk in progress.
        self._args: list[bytes] | None = None
        self._left = 0
        self._bulklen = -1
        self._size = 0  # wire bytes of the multibulk in progress, its headers included

    def __iter__(self) -> Iterator[list[bytes]]:
        while (cmd := self.next_command()) is not None:
            yield cmd

    def next_command(self) -> list[bytes] | None:
        if self._error is not None:
            raise self._error
        if self._need:
            if not self._chunks or not self._may_progress():
                return None
            self._need = 0
            self._wait = -1
            self._checked = 0
            self._join()
        elif self._chunks:
            self._join()
        elif self._args is None and self._pos >= len(self._buf):
            # Everything fed was parsed: ``_parse`` would stall for one byte (a reader
            # asks once more after each read's last command: three calls saved a read).
            self._need = 1
            return None
        try:
            return self._parse()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _may_progress(self) -> bool:
        if self.buffered >= self._need:
            return True
        wait = self._wait
        if wait >= 0:
            chunks = self._chunks
            for i in range(self._checked, len(chunks)):
                if wait in chunks[i]:
                    return True
            self._checked = len(chunks)
        return False

    def _stall(self, pos: int, need: int, wait: int = -1) -> None:
        self._pos = pos
        self._need = need
        self._wait = wait

    def _parse(self) -> list[bytes] | None:
        buf = self._buf
        pos = self._pos
        n = len(buf)
        scan = self._scan  # nonzero only when resuming a stalled search
        self._scan = 0
        max_inline = self.max_inline_len
        args = self._args
        small = _SMALL_INTS
        while True:
            if args is None:
                if pos >= n:
                    self._stall(pos, 1)
                    return None
                if buf[pos] != 42:  # not '*': inline
                    nl = buf.find(b"\n", pos + scan)
                    if nl < 0 or nl - pos > max_inline:
                        self._line_incomplete(pos, nl, 10, _TOO_BIG_INLINE)
                        return None
                    scan = 0
                    end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                    line = buf[pos:end]
                    pos = self._pos = nl + 1
                    cmd = split_args(line)
                    if cmd:
                        return cmd
                    continue  # empty line: no command
                count = _SHORT_MBULK.get(buf[pos : pos + 4])
                if (count is not None and max_inline >= 5
                        and count <= self.max_multibulk_len):
                    start = pos  # (what the lines below read from it, without the search)
                    pos += 4
                    scan = 0
                else:
                    r = buf.find(b"\r", pos + scan)
                    if r < 0 or r + 1 >= n or r - pos > max_inline:
                        self._line_incomplete(pos, r, 13, _TOO_BIG_MBULK)
                        return None
                    scan = 0
                    field = buf[pos + 1 : r]
                    count = small.get(field)
                    if count is None:
                        count = string2ll(field)
                    if count is None or count > self.max_multibulk_len:
                        raise ProtocolError(_BAD_MBULK_LEN)
                    start = pos
                    pos = r + 2
                    if count <= 0:
                        continue  # Redis skips empty and null multibulks
                if _SPLIT_MIN <= count <= _SPLIT_MAX and max_inline >= 5:
                    # Small bulks free of CRLF, all here: split, not the loop below (see
                    # _BULK_HEADERS_IN). What this cannot take, the loop parses, raises or
                    # waits for, as Redis does.
                    window = buf[pos : pos + _SPLIT_WINDOW]
                    parts = window.split(b"\r\n", 2 * count)
                    if len(parts) > 2 * count:
                        args = parts[1::2]
                        # (Each header against its piece's length, pairwise in C: no list.)
                        if (not any(map(ne, map(_BULK_HEADERS_IN.get, parts[0:-1:2]),
                                            map(len, args)))
                                and (self.max_bulk_len >= 9999
                                     or max(map(len, args)) <= self.max_bulk_len)):
                            pos += len(window) - len(parts[-1])
                            max_request = self.max_request_len
                            if max_request is not None and pos - start > max_request:
                                raise ProtocolError(_TOO_BIG_REQUEST.format(max_request))
                            if pos == n:  # drop a consumed buffer now (as below)
                                self._buf = b""
                                pos = 0
                            self._pos = pos
                            return args
                args = []
                left = count
                bulklen = -1
                size = pos - start  # (the header's bytes)
            else:
                left = self._left
                bulklen = self._bulklen
                size = self._size
            max_bulk = self.max_bulk_len
            max_request = self.max_request_len
            append = args.append
            while left:
                if bulklen < 0:
                    r = buf.find(b"\r", pos + scan)
                    if r < 0 or r + 1 >= n or r - pos > max_inline:
                        self._save(args, left, -1, size)
                        self._line_incomplete(pos, r, 13, _TOO_BIG_BULK)
                        return None
                    scan = 0
                    if buf[pos] != 36:  # '$'
                        raise _expected_dollar(buf[pos])
                    field = buf[pos + 1 : r]
                    bulklen = small.get(field)
                    if bulklen is None:
                        bulklen = string2ll(field)
                        if bulklen is None:
                            raise ProtocolError(_BAD_BULK_LEN)
                    if bulklen < 0 or bulklen > max_bulk:
                        raise ProtocolError(_BAD_BULK_LEN)
                    size += r + 4 - pos + bulklen
                    if max_request is not None and size > max_request:
                        raise ProtocolError(_TOO_BIG_REQUEST.format(max_request))
                    pos = r + 2
                end = pos + bulklen
                if end + 2 > n:
                    self._save(args, left, bulklen, size)
                    self._stall(pos, bulklen + 2)
                    return None
                append(buf[pos:end])
                pos = end + 2
                bulklen = -1
                left -= 1
            self._args = None
            if pos == n:  # drop a consumed (possibly large) buffer now, not at the next feed
                self._buf = b""
                pos = 0
            self._pos = pos
            return args

    def _line_incomplete(self, pos: int, found: int, terminator: int, too_big: str) -> None:
        """Stall on, or reject, a line or header whose terminator is not (all) buffered.

        ``found`` is the terminator's index or -1. A header (CR terminated) also needs the
        byte after its CR. Longer than ``max_inline_len`` is an error whether or not the
        terminator has arrived, so the outcome does not depend on how the input was split.
        """
        n = len(self._buf)
        limit = self.max_inline_len
        if found < 0:
            if n - pos > limit:
                raise ProtocolError(too_big)
            self._scan = n - pos
            self._stall(pos, limit + 1, terminator)
        elif found - pos > limit:
            raise ProtocolError(too_big)
        else:  # a header's CR is the last byte: wait for the one after it
            self._scan = found - pos
            self._stall(pos, found + 2 - pos)

    def _save(self, args: list[bytes], left: int, bulklen: int, size: int) -> None:
        self._args = args
        self._left = left
        self._bulklen = bulklen
        self._size = size


# ---------------------------------------------------------------------------------------
# Reply encoding


_CRLF = b"\r\n"
_OK = b"+OK\r\n"
_NULL2 = b"$-1\r\n"
_NULL3 = b"_\r\n"
_TRUE3 = b"#t\r\n"
_FALSE3 = b"#f\r\n"
_INTS = {i: b":%d\r\n" % i for i in range(-1, 1024)}
_BULK_HEADERS = [b"$%d\r\n" % i for i in range(1024)]
_STRUCT_CACHE: dict[Any, bytes] = {OK: _OK}


def _format_double(value: float) -> bytes:
    """Format a double as Redis 7 does: inf/-inf/nan, integral values without a fraction."""
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value.is_integer() and abs(value) < 2**63:
        if value == 0 and math.copysign(1.0, value) < 0:
            return b"-0"
        return b"%d" % int(value)
    return repr(value).encode()


def _line_text(text: str) -> bytes:
    # Redis turns CR/LF in status and error texts into spaces rather than break framing.
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return text.encode()


def _bulk(data: bytes) -> bytes:
    n = len(data)
    if n < 1024:
        return _BULK_HEADERS[n] + data + _CRLF
    return b"$%d\r\n%b\r\n" % (n, data)


def encode_reply(value: Any, proto: int = 2) -> bytes:
    """Encode a reply value (see ``wire.reply``) as RESP2 (``proto=2``) or RESP3 (``proto=3``).

    RESP2 has no map, set, double, boolean, null or big-number types, so they go out as Redis
    sends them to RESP2 clients: a map as a flat array of key, value; a set as an array; a
    double as a bulk string; a boolean as ``:1``/``:0``; None as the null bulk ``$-1``; an
    integer beyond 64 bits as a bulk string of its digits.
    """
    if value is OK:
        return _OK
    t = type(value)
    if t is bytes:
        return _bulk(value)
    if t is Encoded:
        return value.data
    if t is Streamed:
        return b"".join(value.pieces())
    if value is None:
        return _NULL3 if proto == 3 else _NULL2
    if t is int:
        b = _INTS.get(value)
        if b is not None:
            return b
    out: list[bytes] = []
    _encode_into(value, proto, out)
    return out[0] if len(out) == 1 else b"".join(out)


_BIG_BULK = 64 * 1024


def encode_reply_chunks(value: Any, proto: int = 2, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """``encode_reply`` as a stream of pieces, so a large reply is never encoded whole.

    Arrays, maps and sets are encoded an element at a time and handed out in pieces of
    about ``chunk`` bytes; a large bulk string goes out as header, the value itself (not
    copied) and CRLF. The pieces joined equal ``encode_reply(value, proto)``. A caller that
    sends each piece before asking for the next holds one piece, not the whole reply.
    """
    t = type(value)
    if t is Encoded:
        yield value.data
        return
    if t is Streamed:
        yield from value.pieces()
        return
    if t is bytes:
        if len(value) < _BIG_BULK:
            yield _bulk(value)
        else:
            yield b"$%d\r\n" % len(value)
            yield value
            yield _CRLF
        return
    if t is list or t is tuple:
        header, items = b"*%d\r\n" % len(value), value
    elif t is dict:
        header = b"%%%d\r\n" % len(value) if proto == 3 else b"*%d\r\n" % (2 * len(value))
        items = [x for pair in value.items() for x in pair]
    elif t is set or t is frozenset:
        header, items = (b"~%d\r\n" if proto == 3 else b"*%d\r\n") % len(value), list(value)
    else:
        yield encode_reply(value, proto)
        return
    out = [header]
    size = len(header)
    for item in items:
        if (type(item) is bytes and len(item) >= _BIG_BULK) or type(item) in (list, tuple, dict):
            if out:
                yield b"".join(out)
                out, size = [], 0
            yield from encode_reply_chunks(item, proto, chunk)
            continue
        before = len(out)
        _encode_into(item, proto, out)
        for piece in out[before:]:
            size += len(piece)
        if size >= chunk:
            yield b"".join(out)
            out, size = [], 0
    if out:
        yield b"".join(out)


def _encode_into(value: Any, proto: int, out: list[bytes]) -> None:
    t = type(value)
    if t is bytes:
        out.append(_bulk(value))
    elif value is None:
        out.append(_NULL3 if proto == 3 else _NULL2)
    elif t is bool:
        out.append((_TRUE3 if value else _FALSE3) if proto == 3 else _INTS[int(value)])
    elif t is int:
        if _LLONG_MIN <= value <= _LLONG_MAX:
            out.append(_INTS.get(value) or b":%d\r\n" % value)
        elif proto == 3:
            out.append(b"(%d\r\n" % value)
        else:
            out.append(_bulk(b"%d" % value))
    elif t is str:
        out.append(_bulk(value.encode()))
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, proto, out)
    elif t is SimpleString or t is ErrorReply:
        cached = _STRUCT_CACHE.get(value)
        if cached is None:
            cached = (b"+" if t is SimpleString else b"-") + _line_text(value.text) + _CRLF
            if len(_STRUCT_CACHE) < 256:
                _STRUCT_CACHE[value] = cached
        out.append(cached)
    elif t is dict:
        out.append(b"%%%d\r\n" % len(value) if proto == 3 else b"*%d\r\n" % (2 * len(value)))
        for k, v in value.items():
            _encode_into(k, proto, out)
            _encode_into(v, proto, out)
    elif t is set or t is frozenset:
        out.append((b"~%d\r\n" if proto == 3 else b"*%d\r\n") % len(value))
        for item in value:
            _encode_into(item, proto, out)
    elif t is float:
        text = _format_double(value)
        out.append(b"," + text + _CRLF if proto == 3 else _bulk(text))
    else:
        _encode_subclass(value, proto, out)


def _encode_subclass(value: Any, proto: int, out: list[bytes]) -> None:
    # Rare: Pub/Sub's wrappers, and subclasses of the plain types (IntEnum, bytearray, ...).
    t = type(value)
    if t is Push:
        out.append((b">%d\r\n" if proto == 3 else b"*%d\r\n") % len(value.items))
        for item in value.items:
            _encode_into(item, proto, out)
    elif t is Replies:
        for item in value.items:
            _encode_into(item, proto, out)
    elif isinstance(value, bool):
        _encode_into(bool(value), proto, out)
    elif isinstance(value, int):
        _encode_into(int(value), proto, out)
    elif isinstance(value, bytes | bytearray | memoryview):
        _encode_into(bytes(value), proto, out)
    elif isinstance(value, str):
        _encode_into(str(value), proto, out)
    elif isinstance(value, float):
        _encode_into(float(value), proto, out)
    elif isinstance(value, list | tuple):
        _encode_into(list(value), proto, out)
    elif isinstance(value, dict):
        _encode_into(dict(value), proto, out)
    elif isinstance(value, set | frozenset):
        _encode_into(set(value), proto, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a Redis reply")


def encode_command(*args: bytes | str | int | float) -> bytes:
    """Encode a command as a RESP2 multibulk of bulk strings (what clients send)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        t = type(arg)
        if t is bytes:
            data = arg
        elif t is str:
            data = arg.encode()
        elif t is int:
            data = b"%d" % arg
        elif t is float:
            data = repr(arg).encode()
        elif isinstance(arg, bytes | bytearray | memoryview):
            data = bytes(arg)
        else:
            raise TypeError(f"cannot send {type(arg).__name__} as a command argument")
        out.append(_bulk(data))
    return b"".join(out)
