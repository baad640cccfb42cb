"""``raftkv-cli status`` and ``raftkv status`` (one renderer for both): every node's Raft
state, asked of each node directly.

Exit codes of both commands: 0 every node answered and one leads; 1 some node is down or
no leader is known; 2 no node answered."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import click
import trio

from client.commands import parse_info
from client.connection import TRANSPORT_ERRORS, Connection, failure_reason, parse_endpoints
from client.security import Security
from wire.reply import ErrorReply


@attrs.frozen
class NodeStatus:
    """One endpoint's answer to ``INFO raft`` (``up`` False and ``error`` set if none)."""

    endpoint: str
    up: bool
    node_id: int | None = None
    role: str = ""
    term: int | None = None
    leader_id: int | None = None
    commit_index: int | None = None
    last_applied: int | None = None
    last_log_index: int | None = None
    members: tuple[int, ...] = ()
    lag: int | None = None
    error: str = ""


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def probe(endpoint: str, answer_within: float,
                security: Security | None = None) -> NodeStatus:
    with trio.move_on_after(answer_within):
        try:
            conn = await Connection.open(endpoint, security)
        except OSError as exc:
            return NodeStatus(endpoint, False, error=failure_reason(exc))
        try:
            reply = await conn.request("INFO", "raft")
        except TRANSPORT_ERRORS as exc:
            return NodeStatus(endpoint, False, error=str(exc))
        finally:
            await conn.aclose()
        if isinstance(reply, ErrorReply):
            return NodeStatus(endpoint, False, error=reply.text)
        info = parse_info(reply)
        members = tuple(sorted(
            int(m.split("=", 1)[0]) for m in info.get("members", "").split(",")
            if m.split("=", 1)[0].isdigit()
        ))
        return NodeStatus(
            endpoint, True, node_id=_int(info.get("node_id")), role=info.get("role", "?"),
            term=_int(info.get("term")), leader_id=_int(info.get("leader_id")),
            commit_index=_int(info.get("commit_index")),
            last_applied=_int(info.get("last_applied")),
            last_log_index=_int(info.get("last_log_index")), members=members,
        )
    return NodeStatus(endpoint, False, error="no answer (timed out)")


async def cluster_status(endpoints: str | Iterable[str] | None = None,
                         answer_within: float = 1.0,
                         security: Security | None = None) -> list[NodeStatus]:
    """Every endpoint's status, asked concurrently, in the order given.

    ``lag`` is how many committed entries a node has still to apply, counted against the
    leader's commit index (the latest term's leader among the answers). A down node's id
    is filled in when it is the only member id no live node claimed.
    """
    eps = parse_endpoints(endpoints)
    found: list[NodeStatus | None] = [None] * len(eps)

    async def one(i: int) -> None:
        found[i] = await probe(eps[i], answer_within, security)

    async with trio.open_nursery() as nursery:
        for i in range(len(eps)):
            nursery.start_soon(one, i)
    nodes = [n for n in found if n is not None]
    leaders = [n for n in nodes if n.up and n.role == "leader"]
    leader = max(leaders, key=lambda n: n.term or 0) if leaders else None
    out = []
    for n in nodes:
        if n.up and leader is not None and leader.commit_index is not None and (
                n.last_applied is not None):
            n = attrs.evolve(n, lag=max(0, leader.commit_index - n.last_applied))
        out.append(n)
    claimed = {n.node_id for n in out if n.up}
    members = {m for n in out for m in n.members}
    missing = sorted(members - claimed)
    down = [i for i, n in enumerate(out) if not n.up]
    if len(missing) == 1 and len(down) == 1:
        out[down[0]] = attrs.evolve(out[down[0]], node_id=missing[0])
    return out


def status_exit_code(nodes: list[NodeStatus]) -> int:
    """0 all up with a leader, 1 some down or no leader, 2 none answered."""
    if not any(n.up for n in nodes):
        return 2
    return 0 if all(n.up for n in nodes) and any(n.role == "leader" for n in nodes) else 1


_HEADERS = ("ID", "ENDPOINT", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "STATUS")


def _cells(n: NodeStatus) -> tuple[str, ...]:
    def show(v: object) -> str:
        return "-" if v is None or v == "" else str(v)

    return (show(n.node_id), n.endpoint, show(n.role) if n.up else "-", show(n.term),
            show(n.commit_index), show(n.last_applied), show(n.lag),
            "up" if n.up else f"down ({n.error})")


def render_table(nodes: list[NodeStatus], color: bool = False) -> str:
    rows = [_HEADERS, *(_cells(n) for n in nodes)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(_HEADERS))]
    lines = []
    for r, row in enumerate(rows):
        text = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        if color and r == 0:
            text = click.style(text, bold=True)
        elif color and not nodes[r - 1].up:
            text = click.style(text, fg="red")
        elif color and nodes[r - 1].role == "leader":
            text = click.style(text, fg="green")
        lines.append(text)
    return "\n".join(lines)


def to_json(nodes: list[NodeStatus]) -> list[dict[str, object]]:
    return [attrs.asdict(n, value_serializer=lambda _i, _a, v: list(v)
                         if isinstance(v, tuple) else v) for n in nodes]
