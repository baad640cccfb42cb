"""Peer-side sizes, all derived from the one size a user sets: ``--max-request-bytes``.

A client request becomes one log entry of about the same size; that entry must always fit
in one peer frame, inside an AppendEntries (or a ForwardRequest from a follower), with room
to spare, or the cluster wedges on it (issue 12: a 17 MB SET against a 16 MiB frame limit
stalled commit for good). So the frame limit is twice the largest request plus 1 MiB, and
never below 16 MiB. AppendEntries batches are bounded in bytes by the core
(``RaftConfig.max_batch_bytes``, 1 MiB like etcd's MaxSizePerMsg; a single entry larger
than that travels alone), and snapshots go in 512 KiB chunks, both far below the limit.
"""

from __future__ import annotations

from raftkv.node.settings import NodeSettings
from raftkv.node.transport import TransportLimits

MIB = 1024 * 1024
GiB = 1024 * MIB
MIN_FRAME_SIZE = 16 * MIB
FRAME_OVERHEAD = MIB  # message fields, msgpack headers, per-argument lengths
MAX_FRAME_SIZE = 2**32 - 1  # what the 4-byte frame header can express
# The largest --max-request-bytes a frame can carry (peer_frame_limit); the flag's upper
# bound, so a larger value is a usage error rather than a traceback at start (attack5).
MAX_REQUEST_BYTES = (MAX_FRAME_SIZE - FRAME_OVERHEAD) // 2


def request_size(args: list[bytes]) -> int:
    """A command's size as the client sent it in RESP (``*N``, then ``$len`` and the bytes of
    each argument): the measure --max-request-bytes bounds, like etcd's bound on the encoded
    request. It is never below the command's size inside a log entry or a ForwardRequest
    (msgpack frames each argument in at most 5 bytes, RESP in at least 6), so counting
    this way, many tiny arguments cannot outgrow a frame either."""
    # Each argument: "$", its length's digits, CRLF, the bytes, CRLF. Counted with C-level
    # passes only (a million-argument command took 0.2-0.6 s of the event loop as a
    # generator); the digits pass only when some argument has more than one digit. A
    # short command is counted by a plain loop: the passes' setup cost more than it (a
    # session's ``once`` entry, with its 19-digit id, took 1.4 us here, a plain INCR 0.5).
    n = len(args)
    if n <= _SHORT:
        total = 6 * n + (4 if n < 10 else 5)  # "*N\r\n": N < 10, or N <= _SHORT < 100
        for size in map(len, args):
            total += size if size < 10 else size + len(str(size)) - 1
        return total
    lengths = list(map(len, args))
    total = len(b"*%d\r\n" % n) + sum(lengths) + 6 * n
    if max(lengths) >= 10:
        total += sum(map(len, map(str, lengths))) - n
    return total


_SHORT = 16  # arguments ``request_size`` counts with a loop


def peer_frame_limit(max_request_bytes: int) -> int:
    """The peer frame limit for requests up to ``max_request_bytes``."""
    if max_request_bytes < 1:
        raise ValueError("max_request_bytes must be positive")
    limit = max(MIN_FRAME_SIZE, 2 * max_request_bytes + FRAME_OVERHEAD)
    if limit > MAX_FRAME_SIZE:
        raise ValueError(f"max_request_bytes {max_request_bytes} is too large: a peer frame "
                         f"holds at most {MAX_REQUEST_BYTES} bytes of it")
    return limit


def max_reply_bytes(settings: NodeSettings) -> int:
    """The largest reply a leader sends back to a follower for a forwarded command."""
    return peer_frame_limit(settings.max_request_bytes) - FRAME_OVERHEAD


def transport_limits(settings: NodeSettings) -> TransportLimits:
    return TransportLimits(max_frame_size=peer_frame_limit(settings.max_request_bytes))


def total_limit(requested: int, maxmemory: int, max_request_bytes: int) -> int:
    """``--client-buffer-total`` as given, or for 0 (auto): a quarter of ``--maxmemory``
    when that is set (at least 4 maximal requests), else 1 GiB."""
    if requested:
        return requested
    if maxmemory:
        return max(maxmemory // 4, 4 * max_request_bytes)
    return GiB


def forward_reply_limit(settings: NodeSettings) -> int:
    """The bytes of replies to forwarded commands a leader holds queued for followers, all
    links together: ``--client-buffer-total``, as for its own clients' buffers (they are
    replies owed to clients, only of other nodes; raftkv.node.forwarding)."""
    return total_limit(settings.client_buffer_total, settings.maxmemory,
                       settings.max_request_bytes)
