"""``raftkv member list|add|remove|promote``: blocking helpers over the tiny RESP probe."""

from __future__ import annotations

import time

import click

from raftkv.probe import call, info_raft, parse_members
from wire.reply import OK, ErrorReply


def cluster_view(endpoints: list[str]) -> tuple[dict[str, str], str]:
    """INFO raft of the leader if one of ``endpoints`` is (or names) it, else of any member
    that answers; and the endpoint it came from."""
    fallback: tuple[dict[str, str], str] | None = None
    errors = []
    for addr in endpoints:
        try:
            info = info_raft(addr)
        except (OSError, ConnectionError) as exc:
            errors.append(f"{addr}: {exc}")
            continue
        if info.get("role") == "leader":
            return info, addr
        leader = info.get("leader_client_addr", "")
        if leader and leader not in endpoints:
            try:
                return info_raft(leader), leader
            except (OSError, ConnectionError):
                pass
        if fallback is None and info.get("members"):
            fallback = (info, addr)
    if fallback is not None:
        return fallback
    raise click.ClickException("no member answered: " + "; ".join(errors))


def print_members(endpoints: list[str]) -> None:
    info, _ = cluster_view(endpoints)
    leader = int(info.get("leader_id", 0) or 0)
    members = parse_members(info.get("members", ""))
    click.echo(f"{'ID':>4}  {'PEER ADDR':<24}{'ROLE':<9}LEADER")
    for node_id, (addr, role) in sorted(members.items()):
        click.echo(f"{node_id:>4}  {addr:<24}{role:<9}{'yes' if node_id == leader else ''}")
    if not leader:
        click.echo("(no leader known right now)", err=True)


def change(endpoints: list[str], words: list[str], timeout: float) -> None:
    """Send ``RAFT <words>`` to the endpoints in turn (each forwards to the leader) until
    one commits it, up to ``timeout`` seconds; print the new members.

    TRYAGAIN and UNKNOWN move on to the next endpoint, not back to the same one: a node
    that was removed, or is cut off in a minority, answers them for good, and used to
    end every command although the other endpoints reach the leader (attack5). Sending
    again after UNKNOWN is safe (README, Membership): an ADDNODE that did commit answers
    +OK, a REMOVENODE that did says the node is not a member."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        for addr in endpoints:
            try:
                reply = call(addr, "RAFT", *words, timeout=10.0)
            except (OSError, ConnectionError) as exc:
                last = f"{addr}: {exc}"
                continue
            if reply == OK:
                click.echo(f"{' '.join(words)}: committed")
                print_members(endpoints)
                return
            text = reply.text if isinstance(reply, ErrorReply) else repr(reply)
            if not text.startswith(("TRYAGAIN", "UNKNOWN")):
                raise click.ClickException(text)
            last = f"{addr}: {text}"
            if time.monotonic() >= deadline:
                break
        if time.monotonic() >= deadline:
            raise click.ClickException(f"gave up: {last}")
        time.sleep(0.3)  # the cluster asked us to come back later
