"""Pure, sans-IO codecs: length-prefixed frames, typed msgpack records, the Redis protocol.

Nothing in this package touches sockets, files, clocks or trio.
"""

from wire.errors import ProtocolError
from wire.frames import MAX_FRAME_SIZE, FrameDecoder, encode_frame

__all__ = ["MAX_FRAME_SIZE", "FrameDecoder", "ProtocolError", "encode_frame"]
