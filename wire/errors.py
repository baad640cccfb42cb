"""The one exception every malformed input across wire/ raises."""


class ProtocolError(Exception):
    """Malformed, oversized or otherwise invalid input on any wire codec.

    For the Redis protocol the message is the exact text Redis would send after ``-ERR ``
    (e.g. ``Protocol error: invalid bulk length``), so servers can relay it verbatim.
    """
