"""What the simulator needs to know about the core's names and peer messages, in one place."""

from __future__ import annotations

from typing import Any

from raftkv.raft import NotLeader, Role
from wire.raft import AppendEntriesResponse, RequestVoteResponse

LEADER = Role.LEADER

__all__ = [
    "LEADER",
    "NotLeader",
    "brief",
    "is_append_ack",
    "is_prevote",
    "is_vote_grant",
    "show",
]


def is_prevote(msg: Any) -> bool:
    """Pre-vote traffic carries a term the sender has not adopted (nothing to persist)."""
    return bool(getattr(msg, "pre_vote", False))


def is_vote_grant(msg: Any) -> bool:
    """A (real, not pre-) vote response that grants the vote to ``msg.dst``."""
    return type(msg) is RequestVoteResponse and msg.granted and not msg.pre_vote


def is_append_ack(msg: Any) -> bool:
    return type(msg) is AppendEntriesResponse and msg.success


def brief(obj: Any) -> str:
    """A compact, deterministic description (feeds the run's digest)."""
    if obj is None or isinstance(obj, str):
        return obj or ""
    if hasattr(obj, "src") and hasattr(obj, "term"):
        n = len(getattr(obj, "entries", ()) or ())
        return f"{type(obj).__name__}:{obj.src}>{obj.dst}:{obj.term}:{n}"
    return repr(obj)


def show(obj: Any) -> str:
    """A readable one-line description for traces (entries summarised, not dumped)."""
    if not hasattr(obj, "__attrs_attrs__"):
        return str(obj)
    parts = []
    for field in obj.__attrs_attrs__:
        value = getattr(obj, field.name)
        if field.name == "entries" and isinstance(value, (list, tuple)):
            value = (
                f"[{value[0].index}..{value[-1].index} terms {value[0].term}..{value[-1].term}]"
                if value
                else "[]"
            )
        elif isinstance(value, bytes) and len(value) > 24:
            value = value[:24] + b"..."
        parts.append(f"{field.name}={value}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def register_snapshot(value: bytes, index: int) -> bytes:
    """The simulator's snapshot of its register at ``index``: the value, then filler (so a
    snapshot spans several chunks and differs per index)."""
    return len(value).to_bytes(4, "big") + value + f"@{index}".encode() * 8


def register_from_snapshot(data: bytes) -> bytes:
    """The register value a snapshot holds (the simulator snapshots nothing else)."""
    if not data:
        return b""
    n = int.from_bytes(data[:4], "big")
    return data[4 : 4 + n]
