"""``INFO [section ...]`` in Redis's text format, with a ``# Raft`` section."""

from __future__ import annotations

import os
from typing import Any

import trio

from raftkv import __version__
from raftkv.node.node import Node
from raftkv.probe import describe_members
from raftkv.server.connection import ClientRegistry

REDIS_COMPAT_VERSION = "7.2.0"  # the Redis protocol level we speak, reported by HELLO/INFO
DEFAULT = ("server", "clients", "memory", "stats", "replication", "keyspace", "raft")


def _server(node: Node, clients: ClientRegistry | None) -> dict[str, Any]:
    s = node.settings
    return {
        "redis_version": REDIS_COMPAT_VERSION,
        "raftkv_version": __version__,
        "redis_mode": "standalone",
        "process_id": os.getpid(),
        "tcp_port": node.client_port,
        "uptime_in_seconds": int(trio.current_time() - node.started_at),
        "client_addr": s.client_advertised,
        "peer_addr": s.peer_advertised,
        "data_dir": s.data_dir,
    }


def _clients(node: Node, clients: ClientRegistry | None) -> dict[str, Any]:
    return clients.clients_info() if clients is not None else {}


def _memory(node: Node, clients: ClientRegistry | None) -> dict[str, Any]:
    memory = node.memory
    return {"used_memory_rss": memory.used(), "maxmemory": memory.limit,
            "maxmemory_policy": "noeviction", "oom_refused_commands": memory.refused}


def _stats(node: Node, clients: ClientRegistry | None) -> dict[str, Any]:
    port = clients.info() if clients is not None else {}
    return {**{f"raft_{k}": v for k, v in node.stats.items()},
            "raft_read_rounds": node.core.read_rounds, **port}


def _replication(node: Node, clients: ClientRegistry | None) -> dict[str, Any]:
    return {"role": "master" if node.membership.role() == "leader" else "slave"}


def _keyspace(node: Node, clients: ClientRegistry | None) -> dict[str, Any]:
    n = len(node.kv)
    return {"db0": f"keys={n},expires={node.kv.expiring},avg_ttl=0"} if n else {}


def raft_info(node: Node) -> dict[str, Any]:
    """INFO raft and RAFT STATUS (``raftkv status``, --join and the tools parse it)."""
    core = node.core
    s = node.settings
    return {
        "node_id": node.id,
        "role": node.membership.role(),
        "term": core.term,
        "leader_id": core.leader_id,
        "leader_client_addr": node.leader_client_addr(),
        "commit_index": core.commit_index,
        "last_applied": node.applied,
        "last_log_index": core.last_index,
        "snapshot_index": node.storage.snapshot_meta().index,
        # Automatic snapshots this node put off while leading (node/snapshots.py).
        "snapshots_leader_deferred": node.snapshots.deferred,
        "members": describe_members(core.cluster_config),
        # voters the log records as having served (raftkv.node.publish)
        "published": ",".join(map(str, sorted(node.kv.published_members))),
        # entry forms this node applies, the level every member reads (the gate), and
        # each member's recorded level (raftkv.kv.features)
        "feature_level": node.level,
        "cluster_level": node.kv.cluster_level,
        "member_levels": ",".join(f"{i}={level}" for i, level
                                  in sorted(node.kv.member_levels.items())),
        "client_addr": s.client_advertised,
        "peer_addr": s.peer_advertised,
        "fsync": s.fsync,
        "cluster_id": node.transport.cluster_id,
    }


SECTIONS = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "stats": _stats,
    "replication": _replication,
    "keyspace": _keyspace,
    "raft": lambda node, clients: raft_info(node),
}


def render_info(node: Node, clients: ClientRegistry | None, sections: list[str]) -> str:
    """INFO's text; ``clients`` is the client port the command came in on."""
    wanted = DEFAULT if not sections or any(s in ("all", "everything", "default")
                                            for s in sections) else sections
    parts = []
    for name in wanted:
        fn = SECTIONS.get(name)
        if fn is None:
            continue
        body = "".join(f"{k}:{v}\r\n" for k, v in fn(node, clients).items())
        parts.append(f"# {name.capitalize()}\r\n{body}")
    return "\r\n".join(parts)
