"""The client port's limits, derived once from the node's settings (README "Limits").

Why one place: every bound of the client port (request size, query and output buffers,
connection counts, deadlines) is read here, so the README table and the code cannot drift.
``max_clients`` is capped by the open-file limit, as Redis does: a node whose clients took
every descriptor could not open a WAL segment or a snapshot file, or dial a peer.
"""

from __future__ import annotations

import logging
import resource

import attrs

from raftkv.log import event
from raftkv.node.settings import NodeSettings
from raftkv.node.sizes import total_limit

log = logging.getLogger("raftkv.server")

# Descriptors kept for everything but clients: WAL segments and snapshot files, the data
# directory, peer links (two per peer), listeners, trio's wakeup pipe and epoll, worker
# threads, stdio. Redis keeps 32 plus its own extras; a Raft node has more files open.
FD_RESERVE = 96


@attrs.frozen
class ClientLimits:
    max_request_bytes: int
    max_bulk_len: int
    query_buffer_bytes: int
    output_buffer_bytes: int  # 0: unlimited
    output_stall_timeout: float
    buffer_total_bytes: int  # all clients' query and output buffers together
    max_clients: int
    max_new_clients: int
    first_command_timeout: float
    idle_timeout: float  # 0: never

    @classmethod
    def from_settings(cls, s: NodeSettings, max_clients: int) -> ClientLimits:
        return cls(
            max_request_bytes=s.max_request_bytes,
            max_bulk_len=min(s.max_bulk_len, s.max_request_bytes),
            query_buffer_bytes=s.client_query_buffer_limit or 4 * s.max_request_bytes,
            output_buffer_bytes=s.client_output_buffer_limit,
            output_stall_timeout=s.client_output_stall_timeout,
            buffer_total_bytes=total_limit(s.client_buffer_total, s.maxmemory,
                                           s.max_request_bytes),
            max_clients=max_clients,
            max_new_clients=min(s.max_new_clients, max_clients),
            first_command_timeout=s.first_command_timeout,
            idle_timeout=s.idle_timeout,
        )


def clients_for_descriptors(requested: int, soft: int, reserve: int = FD_RESERVE) -> int:
    """How many clients fit ``soft`` open files with ``reserve`` kept for the node itself
    (at least one, so a node started under a tiny limit still answers an admin)."""
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft - reserve))


def cap_max_clients(requested: int, reserve: int = FD_RESERVE) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``requested + reserve`` (up to the hard limit),
    then cap ``requested`` by what it allows; log a line when clients are capped."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = requested + reserve
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(hard, want)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    allowed = clients_for_descriptors(requested, soft, reserve)
    if allowed < requested:
        event(log, logging.WARNING, "maxclients capped by the open-file limit",
              requested=requested, maxclients=allowed, nofile=soft, reserved=reserve)
    return allowed
