"""Everything a node is configured with; built by ``raftkv serve`` from flags and env vars."""

from __future__ import annotations

import ipaddress
import re

import attrs

from raftkv.kv.features import DEFAULT_BUDGET, MAX_BUDGET, MIN_BUDGET
from raftkv.kv.key_cap import DEFAULT_MAX_KEYS_PER_COMMAND
from raftkv.raft.membership import check_peer_addr_free
from wire.addr import parse_addr
from wire.raft import MAX_NODE_ID

# parse_addr: re-exported
__all__ = ["NodeSettings", "check_own_entry", "parse_addr", "parse_cluster"]

_ID = re.compile(r"[0-9]{1,19}")
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})  # parse_addr's form of a listen-on-all host
LEADER_WAIT_MIN = 2.0  # seconds: NodeSettings.leader_wait's floor


def parse_cluster(text: str) -> dict[int, str]:
    """``1=host:port,2=host:port`` -> {1: "host:port", ...} (like etcd's --initial-cluster).

    Ids and peer addresses must be distinct (etcd refuses a duplicated URL too)."""
    members: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        ident, sep, addr = item.partition("=")
        if not sep or not _ID.fullmatch(ident) or not 1 <= int(ident) <= MAX_NODE_ID:
            raise ValueError(f"expected ID=HOST:PORT with 1 <= ID < 2**63, got {item!r}")
        parse_addr(addr)
        if int(ident) in members:
            raise ValueError(f"node id {ident} appears twice in the cluster list")
        try:
            check_peer_addr_free(members.items(), addr)  # as RAFT ADDNODE would
        except ValueError as exc:
            raise ValueError(f"node {ident} in the cluster list: {exc}") from None
        members[int(ident)] = addr
    if not members:
        raise ValueError("the cluster list is empty")
    return members


def _family(host: str) -> int | None:
    """4 or 6 for an IP literal, None for a hostname."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def check_own_entry(node_id: int, members: dict[int, str], peer_addr: str,
                    advertise_peer_addr: str = "") -> None:
    """ValueError unless node ``node_id``'s entry in ``members`` (``--cluster``) is the
    address it announces (``--advertise-peer-addr``, else ``--peer-addr``), as etcd refuses
    ``--initial-advertise-peer-urls`` that differ from the member's ``--initial-cluster``
    entry: the other nodes dial the entry, this node tells them the other address, and
    which one is right depends on who asks. A wildcard ``--peer-addr`` (``0.0.0.0``,
    ``[::]``) is a listen address: only its port must be the entry's, and an IP-literal entry
    must be of its family (the other family's peers cannot reach it)."""
    entry = members.get(node_id)
    flag, own = ("--advertise-peer-addr", advertise_peer_addr) if advertise_peer_addr \
        else ("--peer-addr", peer_addr)
    if entry is None:
        return
    host, port = parse_addr(own)
    entry_host, entry_port = parse_addr(entry)
    if flag == "--peer-addr" and host in WILDCARD_HOSTS:
        # Listening on every address of ITS family (trio binds [::] IPv6-only): the entry's
        # is one of them unless it is a literal of the other family; a hostname can't be judged.
        entry_family = _family(entry_host)
        if entry_family is None or entry_family == _family(host):
            host = entry_host
    # Hostnames are case-insensitive (RFC 4343), and so are IPv6 literals' hex digits.
    if (entry_host.lower(), entry_port) != (host.lower(), port):
        raise ValueError(f"{flag} {own} differs from node {node_id}'s entry in --cluster "
                         f"({entry}); they must be the same address")


@attrs.frozen
class NodeSettings:
    node_id: int
    client_addr: str
    peer_addr: str
    cluster: dict[int, str]
    data_dir: str
    cluster_id: str = ""  # "": from the data dir, the cluster (--join) or --cluster
    advertise_client_addr: str = ""
    advertise_peer_addr: str = ""
    tick_ms: float = 10.0
    heartbeat_ticks: int = 5
    election_ticks: int = 15
    fsync: str = "always"
    snapshot_entries: int = 100_000  # compact every N applied entries; 0: only on request
    snapshot_stagger: bool = False  # followers snapshot at offsets by id (node/snapshots.py)
    # A leader takes its automatic snapshot only once this many x snapshot_entries entries
    # went by since its last (node/snapshots.py leader_defers); 1: on schedule like followers
    # (the default: the deferral is opt-in, README Limits).
    snapshot_leader_defer: int = 1
    snapshot_fork: bool = False  # encode snapshots in a forked child (node/snapshot_child.py)
    # The change feed (raftkv.kv.feed): the last N log entries' changes, at most B bytes of
    # them; and how many XREAD BLOCK readers may wait at once (raftkv.server.streams).
    watch_retention_entries: int = 100_000
    watch_retention_bytes: int = 64 * 1024 * 1024
    watch_max_blocked: int = 1000
    max_clients: int = 10_000
    max_bulk_len: int = 512 * 1024 * 1024
    # The largest client request (a command's arguments together). Everything downstream is
    # sized from it: a log entry holding one such request always fits in a peer frame.
    max_request_bytes: int = 8 * 1024 * 1024
    # Keys one command (or one MULTI/EXEC, all its commands) may name: one entry applies in
    # one step of the event loop (raftkv/kv/key_cap.py). Checked before proposing or reading.
    max_keys_per_command: int = DEFAULT_MAX_KEYS_PER_COMMAND
    # A leader proposes up to this many of one connection's pipelined plain one-key writes
    # (SET, INCR...: raftkv.server.write_runs) as one log entry, and gathers several
    # connections' runs into one (raftkv.node.gathered), never more than
    # max_keys_per_command commands; 1: each write its own entry.
    write_run: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    # EVAL and friends (Lua): on, as in Redis (every script is bounded by a deterministic
    # budget and memory cap, kv/scripts.py); --no-scripts refuses them. Must be the same on
    # every node.
    enable_scripts: bool = True
    # Instruction units the scripts of one entry may spend (raftkv.kv.features): the leader
    # records its own in each entry that runs scripts, once every member reads that form;
    # this node's reads (EVAL_RO) use it too.
    script_budget: int = attrs.field(default=DEFAULT_BUDGET, validator=[
        attrs.validators.ge(MIN_BUDGET), attrs.validators.le(MAX_BUDGET)])
    idle_timeout: float = 0.0  # seconds; 0 = never close idle client connections
    # Redis's notify-keyspace-events flags this node starts with (CONFIG SET changes them
    # on this node only); "": no keyspace notifications.
    notify_keyspace_events: str = ""
    # Client-port limits (README "Limits"). 0 for the query buffer: 4 x max_request_bytes.
    client_query_buffer_limit: int = 0
    client_output_buffer_limit: int = 64 * 1024 * 1024  # 0 = unlimited
    # Seconds a client may keep its output buffer over half the limit without reading.
    client_output_stall_timeout: float = 10.0
    # Every client's query and output buffers together; past it the largest is
    # disconnected. 0: a quarter of maxmemory if set, else 1 GiB (server/client_buffers.py).
    client_buffer_total: int = 0
    max_new_clients: int = 1024  # connections that have not sent a complete command yet
    first_command_timeout: float = 10.0  # seconds a new connection has to send one
    maxmemory: int = 0  # bytes of RSS above which writes that grow memory get -OOM; 0 = off
    request_timeout: float = 5.0
    # Membership: --join (client addresses of members; an empty node asks to be added),
    # --learner (stay a learner once joined), and how close to the leader's log a learner
    # must be before the leader promotes it.
    join: tuple[str, ...] = ()
    learner: bool = False
    # Peer security (issue 13): a shared secret every peer connection proves it knows.
    peer_secret_file: str = ""
    # Mutual TLS on peer links: this node's certificate and key, and the peer CA.
    peer_tls_cert: str = ""
    peer_tls_key: str = ""
    peer_tls_ca: str = ""
    # Client authentication (raftkv.server.acl): the default user's password, ACL users.
    requirepass: str = attrs.field(default="", repr=False)
    acl_file: str = ""
    # TLS on the client port (raftkv.server.client_tls): certificate, key, the CA of client
    # certificates, and whether clients must present one.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    tls_client_auth: bool = False
    # Allow a non-loopback client or peer address without peer authentication.
    insecure: bool = False
    promote_lag: int = 100
    # Operations: the HTTP port for /metrics /livez /readyz ("" = off), how far applying
    # may trail the commit index for /readyz to answer 200, and the log line format.
    metrics_addr: str = ""
    # Its TLS and /metrics token (raftkv.server.http_auth): by default the client port's
    # certificate when that has TLS; --metrics-plain-http keeps it plain.
    metrics_tls_cert: str = ""
    metrics_tls_key: str = ""
    metrics_tls_ca: str = ""
    metrics_tls_client_auth: bool = False
    metrics_plain_http: bool = False
    metrics_token_file: str = ""
    ready_max_lag: int = 1000
    log_format: str = "text"
    # Test-only: followers answer reads from local state without ReadIndex. It exists so
    # the chaos suite can prove its checker catches stale reads; never use it otherwise.
    unsafe_stale_reads: bool = False

    @property
    def election_timeout(self) -> float:
        """Seconds: the shortest election timeout (a follower's is drawn in [1, 2) of it)."""
        return self.election_ticks * self.tick_ms / 1000

    @property
    def leader_wait(self) -> float:
        """Seconds a command waits for a leader before ``-TRYAGAIN``: at least 2 s, and at
        least 3 election timeouts, so that a normal election fits in it whatever
        ``--election-ticks`` says (a fixed 2 s refused commands during every election once
        the timeout was 2 s or more). A leader that crashed is noticed within 2 timeouts
        (the randomized timeout is drawn in [1, 2) of it), and the third covers the
        pre-vote and vote round trips, or most of a split vote's retry; etcd bounds a
        request by 5 s + 2 election timeouts for the same reason."""
        return max(LEADER_WAIT_MIN, 3 * self.election_timeout)

    @property
    def client_advertised(self) -> str:
        return self.advertise_client_addr or self.client_addr

    @property
    def peer_advertised(self) -> str:
        return self.advertise_peer_addr or self.peer_addr
