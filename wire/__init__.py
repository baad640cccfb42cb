"""Pure, sans-IO codecs: length-prefixed frames, typed msgpack records, the Redis protocol.

Nothing in this package touches sockets, files, clocks or trio.
"""

from wire.errors import ProtocolError

__all__ = ["ProtocolError"]
