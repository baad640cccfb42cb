"""``raftkv-cli watch [PATTERN] [--from ID] [--json] [--count N]``: one line per change.

It runs the async watch (client.watch) under ``trio.run`` in the main thread, so Ctrl-C
reaches it directly. Lines:

- terminal: ``12-0 set "user:1" "alice"`` (redis-cli's quoting; `` deadline=<ms>`` when
  the key expires), piped: the same unquoted, ``--json``: one JSON object per line
  (``id``, ``index``, ``position``, ``op``, ``key``, ``value``, ``deadline``).

Exit statuses as the rest of raftkv-cli: 2 if no node answers at the start (afterwards the
watch moves between nodes for as long as it runs), 1 on an error reply (a feed compacted
past ``--from``: resync and watch from a newer id), 0 after ``--count`` changes or when
the reader of a pipe goes away, 130 on Ctrl-C.
"""

from __future__ import annotations

import json
from typing import Any

import click

from client.api import Client
from client.errors import RaftKVError
from client.feed import Change, ChangeId
from client.format import JSON, RAW, Output, quote
from client.until_stopped import run_until_stopped


def render(change: Change, mode: str) -> str:
    """One change as one line (without the newline)."""
    if mode == JSON:
        return json.dumps(change.to_json())
    if mode == RAW:
        parts = [change.key.decode("utf-8", "surrogateescape")]
        if change.value is not None:
            parts.append(change.value.decode("utf-8", "surrogateescape"))
    else:
        parts = [quote(change.key)] + ([quote(change.value)] if change.value is not None
                                       else [])
    if change.deadline is not None:
        parts.append(f"deadline={change.deadline}")
    return " ".join([str(change.id), change.op, *parts])


async def follow(client: Client, pattern: str, start: str, count: int | None,
                 out: Output) -> None:
    """Print changes until ``count`` of them (None: forever)."""
    await client.connect_once()  # no cluster at all: say so at once (ConnectionFailed)
    seen = 0
    async with client.watch(pattern, start) as watch:
        async for change in watch:
            out.write(render(change, out.mode) + "\n")
            seen += 1
            if count is not None and seen >= count:
                return


def run_watch(client: Client, pattern: str, start: str, count: int | None,
              out: Output) -> int:
    """The exit status of ``raftkv-cli watch``."""
    try:
        return run_until_stopped(out, follow, client, pattern, start, count, out)
    except RaftKVError as exc:
        out.error(f"(error) {exc}")
        return 1


def parse_watch_args(args: list[str], ctx_name: str = "raftkv-cli watch") -> dict[str, Any]:
    """``[PATTERN] [--from ID] [--json] [--count N]`` (given after ``watch``); click's usage
    errors (exit 2) for anything else."""
    cmd = click.Command(ctx_name, params=[
        click.Argument(["pattern"], required=False, default="*"),
        click.Option(["--from", "start"], default="$", show_default=True,
                     help="$ (new changes only), 0 (all retained) or an id to resume after."),
        click.Option(["--json", "as_json"], is_flag=True, help="One JSON object per line."),
        click.Option(["--count"], type=click.IntRange(min=1),
                     help="Stop after this many changes."),
    ])
    try:
        with cmd.make_context(ctx_name, list(args)) as ctx:
            params = dict(ctx.params)
    except click.exceptions.Exit as exc:  # --help was printed
        raise SystemExit(exc.exit_code) from None
    if params["start"] != "$":
        try:
            ChangeId.parse(params["start"])
        except ValueError as exc:
            raise click.BadParameter(f"{exc}; use $, 0 or INDEX-POSITION",
                                     param_hint="--from") from None
    return params
