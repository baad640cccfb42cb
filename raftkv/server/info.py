"""``INFO [section ...]`` in Redis's text format, with a ``# Raft`` section."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import trio

from raftkv import __version__

if TYPE_CHECKING:
    from raftkv.node.node import Node

REDIS_COMPAT_VERSION = "7.2.0"  # the Redis protocol level we speak, reported by HELLO/INFO
DEFAULT = ("server", "clients", "memory", "stats", "replication", "keyspace", "raft")


def _server(node: Node) -> dict[str, Any]:
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


def _clients(node: Node) -> dict[str, Any]:
    server = node.client_server
    return {"connected_clients": len(server.connections),
            "clients_without_command": server.new_clients,
            "maxclients": server.limits.max_clients}


def _memory(node: Node) -> dict[str, Any]:
    memory = node.memory
    return {"used_memory_rss": memory.used(), "maxmemory": memory.limit,
            "maxmemory_policy": "noeviction", "oom_refused_commands": memory.refused}


def _stats(node: Node) -> dict[str, Any]:
    return {**{f"raft_{k}": v for k, v in node.stats.items()}, **node.client_server.info()}


def _replication(node: Node) -> dict[str, Any]:
    info = node.raft_info()
    return {"role": "master" if info["role"] == "leader" else "slave"}


def _keyspace(node: Node) -> dict[str, Any]:
    n = len(node.kv)
    return {"db0": f"keys={n},expires=0,avg_ttl=0"} if n else {}


SECTIONS = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "stats": _stats,
    "replication": _replication,
    "keyspace": _keyspace,
    "raft": lambda node: node.raft_info(),
}


def render_info(node: Node, sections: list[str]) -> str:
    wanted = DEFAULT if not sections or any(s in ("all", "everything", "default")
                                            for s in sections) else sections
    parts = []
    for name in wanted:
        fn = SECTIONS.get(name)
        if fn is None:
            continue
        body = "".join(f"{k}:{v}\r\n" for k, v in fn(node).items())
        parts.append(f"# {name.capitalize()}\r\n{body}")
    return "\r\n".join(parts)
