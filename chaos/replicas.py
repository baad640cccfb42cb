"""Do all replicas hold the same state? Checked at the end of a chaos run.

Linearizability and the final reads see the cluster through its leader (and followers'
ReadIndex); a replica that applied something different would go unnoticed until it became
leader. ``RAFT BACKUP`` on each node copies *that node's* state once it has applied a
quorum-confirmed read index, and answers the copy's index and SHA-256 without sending it:
once the workload has stopped every node reaches the same index, and equal digests at one
index mean equal states (the digest covers keys, values, deadlines and client sessions).
Each copy is freed at once with ``RAFT BACKUP END``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import trio

from chaos.counters import Verdict
from chaos.workload import LOST, client_security
from client.connection import Connection

Addr = tuple[str, int]


def _as_dict(reply: Any) -> dict[str, Any]:
    if isinstance(reply, list):  # RESP2 flattens a map
        reply = dict(zip(reply[::2], reply[1::2], strict=False))
    if not isinstance(reply, dict):
        return {}
    return {(k.decode() if isinstance(k, bytes) else str(k)):
            (v.decode() if isinstance(v, bytes) else v) for k, v in reply.items()}


async def state_digest(addr: Addr, patience: float = 10.0) -> tuple[int, str] | None:
    """(index, SHA-256) of the node's state, or None if it does not answer in time."""
    conn = None
    try:
        with trio.fail_after(patience):
            conn = await Connection.open_host(*addr, security=client_security())
            info = _as_dict(await conn.request("RAFT", "BACKUP"))
            if "index" not in info:
                return None
            with contextlib.suppress(*LOST):
                await conn.request("RAFT", "BACKUP", "END", str(info["id"]))
            return int(info["index"]), str(info["sha256"])
    except (*LOST, trio.TooSlowError, ValueError):
        return None
    finally:
        if conn is not None:
            await conn.aclose()


async def compare_replicas(addrs: Mapping[int, Addr], patience: float = 30.0) -> Verdict:
    """Ask every node for its digest until all answer at one index (or ``patience`` s)."""
    seen: dict[int, tuple[int, str] | None] = {}
    with trio.move_on_after(patience):
        while True:
            seen = {node: await state_digest(addr) for node, addr in sorted(addrs.items())}
            indexes = {d[0] for d in seen.values() if d is not None}
            if None not in seen.values() and len(indexes) == 1:
                digests = {d[1] for d in seen.values() if d is not None}
                (index,) = indexes
                if len(digests) == 1:
                    return Verdict(True, f"{len(seen)} replicas identical at index {index}")
                return Verdict(False, f"replicas differ at index {index}: " + ", ".join(
                    f"n{n} {d[1][:12]}" for n, d in seen.items() if d is not None))
            await trio.sleep(0.5)  # applying or expiring: ask again
    return Verdict(False, f"replicas not at one index after {patience:.0f} s: " + ", ".join(
        f"n{n} {'no answer' if d is None else f'index {d[0]}'}" for n, d in seen.items()))
