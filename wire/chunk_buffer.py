"""The input buffer shared by the incremental Redis-protocol parsers.

Bytes arrive as a list of unjoined chunks next to the buffer being parsed; a parser joins
them only once what it waits for can have arrived, so a large value arriving in many small
reads costs linear, not quadratic, time. A parser that met malformed input keeps the error
and raises it again on every call: the stream has no resynchronisation point.
"""

from __future__ import annotations

from wire.errors import ProtocolError

__all__ = ["ChunkBuffer"]


class ChunkBuffer:
    """``_buf[_pos:]`` is unparsed input, followed by ``_chunks`` (``_chunks_len`` bytes)."""

    __slots__ = ("_buf", "_chunks", "_chunks_len", "_error", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buf) - self._pos + self._chunks_len

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if data:
            self._chunks.append(data if type(data) is bytes else bytes(data))
            self._chunks_len += len(data)

    def _join(self) -> None:
        """Make ``_buf`` hold all unparsed input, from ``_pos = 0``."""
        chunks = self._chunks
        if self._pos >= len(self._buf):
            self._buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        else:
            chunks.insert(0, self._buf[self._pos :])
            self._buf = b"".join(chunks)
        self._pos = 0
        self._chunks = []
        self._chunks_len = 0
