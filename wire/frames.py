"""Length-prefixed frames: a 4-byte big-endian payload length, then the payload.

Peer connections carry a stream of frames, each holding one encoded record. The decoder
validates every header before it buffers the body, so a hostile or corrupt length can never
make a node allocate more than ``max_frame_size`` bytes for one connection.
"""

from __future__ import annotations

import struct

from wire.errors import ProtocolError

HEADER_SIZE = 4
MAX_FRAME_SIZE = 16 * 1024 * 1024
# The header can express at most 2**32 - 1 bytes.
_LIMIT = 2**32 - 1

_HEADER = struct.Struct(">I")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from


def encode_frame(payload: bytes, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """Prefix ``payload`` with its length.

    Raises ``ValueError`` for an empty payload or one longer than ``max_frame_size``: the
    caller built a frame no peer would accept, which is a local bug, not bad input.
    """
    return frame_header(len(payload), max_frame_size) + payload


def frame_header(n: int, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """The 4-byte prefix of a frame whose payload is ``n`` bytes, for a payload sent in
    pieces (``wire.record.encode_frame_pieces``) rather than joined to its header.

    Raises ``ValueError`` as ``encode_frame`` does."""
    if n == 0:
        raise ValueError("empty frame payload")
    if n > max_frame_size:
        raise ValueError(f"frame payload of {n} bytes exceeds max_frame_size {max_frame_size}")
    return _pack_header(n)


class FrameDecoder:
    """Incremental frame parser for one byte stream (one connection).

    ``feed`` returns every payload completed by the new data and keeps a partial tail.
    A zero length or a length above ``max_frame_size`` raises ``ProtocolError`` as soon as
    its header arrives; the decoder is then dead (the stream has lost framing, so nothing
    after the error can be trusted) and every later ``feed`` raises too.
    """

    __slots__ = ("_buf", "_error", "_max")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 1 <= max_frame_size <= _LIMIT:
            raise ValueError(f"max_frame_size must be in [1, {_LIMIT}], got {max_frame_size}")
        self._max = max_frame_size
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    @property
    def max_frame_size(self) -> int:
        return self._max

    @max_frame_size.setter
    def max_frame_size(self, value: int) -> None:
        """Change the limit for frames not yet started (e.g. raise it once a peer has
        authenticated: before that, a stranger may not make us buffer a large frame)."""
        if not 1 <= value <= _LIMIT:
            raise ValueError(f"max_frame_size must be in [1, {_LIMIT}], got {value}")
        self._max = value

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (at most ``max_frame_size + 4``)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume ``data``; return the payloads it completes, in stream order."""
        if self._error is not None:
            raise ProtocolError(f"frame decoder already failed: {self._error}")
        buf = self._buf
        if not buf and type(data) is bytes:
            # Fast path (reads aligned with frame boundaries are common): slice frames
            # straight out of the caller's bytes, buffer only the tail.
            frames, pos = self._split(data)
            if pos < len(data):
                buf += memoryview(data)[pos:]
            return frames
        buf += data
        frames, pos = self._split(buf)
        if pos:
            # One compaction per feed: the consumed prefix goes, only the partial tail stays.
            del buf[:pos]
        return frames

    def _split(self, src: bytes | bytearray) -> tuple[list[bytes], int]:
        """Cut the complete frames out of ``src``; return them and the consumed length."""
        frames: list[bytes] = []
        end = len(src)
        pos = 0
        limit = self._max
        # Slicing a memoryview then bytes() copies each payload exactly once, whatever src is.
        with memoryview(src) as view:
            while end - pos >= HEADER_SIZE:
                (n,) = _unpack_header(src, pos)
                if n == 0 or n > limit:
                    self._fail(n)
                stop = pos + HEADER_SIZE + n
                if stop > end:
                    break
                frames.append(bytes(view[pos + HEADER_SIZE : stop]))
                pos = stop
        return frames, pos

    def _fail(self, n: int) -> None:
        if n == 0:
            err = ProtocolError("zero-length frame")
        else:
            err = ProtocolError(f"frame length {n} exceeds max_frame_size {self._max}")
        self._error = err
        self._buf = bytearray()  # release whatever was held; nothing more will be parsed
        raise err
