"""``raftkv-cli``: the click command line for RaftKV (one-shot commands, a REPL, status).

Exit statuses: 0 success; 1 an error reply (including -TRYAGAIN and an unknown outcome
once the client gave up); 2 no node reachable (or the deadline passed with no answer),
and click's usage errors. A scripted session (stdin not a terminal) exits with the worst
status of its commands; an interactive one with 0.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from client.api import Client
from client.connection import DEFAULT_ENDPOINTS, parse_endpoints
from client.errors import ConnectionFailed, RaftKVError
from client.format import JSON, RAW, TTY, Output
from client.help import overview, usage
from client.repl import NO_CLUSTER, OK, Repl, exit_status, refused_here
from client.security import tls_context
from client.status import render_table, status_exit_code, to_json
from client.subscribe_cli import is_subscribe, run_subscribe
from client.sync import SyncClient
from client.watch_cli import parse_watch_args, run_watch
from raftkv import __version__
from raftkv.kv import legacy_form


def _output(raw: bool | None, as_json: bool) -> Output:
    tty = sys.stdout.isatty()
    if as_json:
        mode = JSON
    elif raw is None:
        mode = TTY if tty else RAW  # like redis-cli: plain values when piped
    else:
        mode = RAW if raw else TTY
    color = tty and mode == TTY and not os.environ.get("NO_COLOR")
    return Output(mode, color)


@click.command(context_settings={
    "help_option_names": ["-h", "--help"],
    "ignore_unknown_options": True,  # `raftkv-cli INCRBY n -5`: -5 is an argument
    "allow_interspersed_args": False,  # options come before the command, as in redis-cli
})
@click.version_option(__version__, prog_name="raftkv-cli")
@click.option("-e", "--endpoints", envvar="RAFTKV_ENDPOINTS", show_envvar=True,
              default=",".join(DEFAULT_ENDPOINTS), show_default=True,
              help="Comma-separated HOST:PORT client addresses of the nodes.")
@click.option("--mode", type=click.Choice(["one-shot", "interactive"]), default=None,
              help="Default: one-shot when a command is given, else interactive.")
@click.option("-x", "stdin_arg", is_flag=True,
              help="Read the last argument of the command from stdin.")
@click.option("--raw/--no-raw", default=None,
              help="Plain values (the default when stdout is not a terminal) or "
                   "redis-cli formatting.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Deadline of each command in seconds, retries included.")
@click.option("--tls", is_flag=True, envvar="RAFTKV_TLS", help="Connect over TLS.")
@click.option("--cacert", envvar="RAFTKV_CACERT", show_envvar=True, type=click.Path(
    dir_okay=False), help="CA of the nodes' certificates (implies --tls; default: the "
    "system's CAs).")
@click.option("--cert", envvar="RAFTKV_CERT", type=click.Path(dir_okay=False),
              help="Client certificate, for nodes run with --tls-client-auth.")
@click.option("--key", envvar="RAFTKV_KEY", type=click.Path(dir_okay=False),
              help="The private key of --cert.")
@click.option("--user", envvar="RAFTKV_USER", show_envvar=True, help="ACL user to AUTH as.")
@click.option("--pass", "password", envvar="RAFTKV_PASSWORD", show_envvar=True,
              help="Password to AUTH with (prefer the env var: a flag shows in `ps`).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def main(endpoints: str, mode: str | None, stdin_arg: bool, raw: bool | None,
         as_json: bool, timeout: float, tls: bool, cacert: str | None, cert: str | None,
         key: str | None, user: str | None, password: str | None,
         command: tuple[str, ...]) -> None:
    """Talk to a RaftKV cluster.

    \b
      raftkv-cli SET greeting hello      one command (Redis syntax)
      raftkv-cli GET greeting
      echo -n hi | raftkv-cli -x SET k   the last argument from stdin
      raftkv-cli status                  every node: role, term, indexes, lag
      raftkv-cli watch 'user:*'          every change to user:* as it happens
      raftkv-cli                         interactive (help, Tab completion)

    Exit status: 0 success, 1 error reply, 2 no node reachable (or usage error).
    """
    refuse_mistyped_option(command)
    try:
        eps = parse_endpoints(endpoints)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--endpoints") from exc
    out = _output(raw, as_json)
    _SECURITY.clear()
    try:
        _SECURITY.update(security_options(tls, cacert, cert, key, user, password))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--cacert/--cert/--key") from exc
    if mode is None:
        mode = "one-shot" if command else "interactive"
    if command and command[0].lower() == "help":  # answered here, never sent to a node
        topic = command[1] if len(command) > 1 else None
        text = overview() if topic is None else usage(topic)
        click.echo(text or f"no help for {topic!r}; try `raftkv-cli help`")
        sys.exit(OK if text else 1)
    if command and command[0].lower() == "status":
        rest = [a for a in command[1:] if a != "--json"]
        if rest:
            raise click.UsageError("status takes no arguments (options go before it)")
        sys.exit(_status(eps, as_json or "--json" in command, out, timeout))
    if command and command[0].lower() == "watch" and mode == "one-shot":
        # The change feed (not Redis's WATCH, which means nothing outside a connection).
        params = parse_watch_args(list(command[1:]))
        if params["as_json"]:
            out = _output(raw, True)
        kv = Client(eps, timeout=timeout, eager=False, **_SECURITY)
        sys.exit(run_watch(kv, params["pattern"], params["start"], params["count"], out))
    if mode == "interactive":
        sys.exit(_interactive(eps, out, timeout))
    if not command:
        raise click.UsageError("--mode one-shot needs a command")
    sys.exit(_one_shot(eps, list(command), stdin_arg, out, timeout))


def refuse_mistyped_option(command: tuple[str, ...]) -> None:
    """A usage error (exit 2, nothing connected) for a command whose first word starts
    with ``-``: no Redis command does, so it is an option click did not know. It passes
    it on as the command (``ignore_unknown_options``), and every word after it with it
    (``allow_interspersed_args=False``): ``--tls-ca ca.pem ... --pass s3cret GET k`` went to
    the node in plain text, password included, and came back printed (attack22).
    redis-cli's message; a value glued on with ``=`` is not shown."""
    if command and command[0].startswith("-"):
        option = command[0].split("=", 1)[0]
        raise click.UsageError(f"Unrecognized option or bad number of args for: '{option}'")


# TLS and AUTH options of this invocation for every client it makes (client/security.py).
_SECURITY: dict[str, Any] = {}


def security_options(tls: bool, cacert: str | None, cert: str | None, key: str | None,
                     user: str | None, password: str | None) -> dict[str, Any]:
    """Client keyword arguments: ``ssl`` (a context) when TLS is asked for, and the
    credentials; OSError/ValueError for files that do not load."""
    options: dict[str, Any] = {}
    if tls or cacert or cert:
        options["ssl"] = tls_context(cacert, cert, key)
    if password:
        options["username"], options["password"] = user or None, password
    return options


def _connect(eps: list[str], timeout: float) -> SyncClient:
    return SyncClient(eps, timeout=timeout, **_SECURITY)


def _one_shot(eps: list[str], command: list[str], stdin_arg: bool, out: Output,
              timeout: float) -> int:
    args = legacy_form([os.fsencode(a) for a in command])
    if stdin_arg:
        args.append(sys.stdin.buffer.read())
    if is_subscribe(args):  # stays and prints messages, on a connection of its own
        return run_subscribe(Client(eps, timeout=timeout, eager=False, **_SECURITY), args, out)
    refused = refused_here(args)
    if refused is not None:
        out.reply(refused)
        return exit_status(refused)
    try:
        kv = _connect(eps, timeout)
    except ConnectionFailed as exc:
        out.error(f"Could not connect to RaftKV: {exc}")
        return NO_CLUSTER
    with kv:
        try:
            value = kv.execute(*args)
        except RaftKVError as exc:
            value = exc
    out.reply(value)
    return exit_status(value)


def _interactive(eps: list[str], out: Output, timeout: float) -> int:
    kv = SyncClient(eps, timeout=timeout, eager=False, **_SECURITY)
    with kv:
        interactive = sys.stdin.isatty()
        try:
            kv.connect_once()
        except ConnectionFailed as exc:
            out.error(f"Could not connect to RaftKV: {exc}")
            if not interactive:
                return NO_CLUSTER
        return Repl(kv, out, interactive).run()


def _status(eps: list[str], as_json: bool, out: Output, timeout: float) -> int:
    """The table (or JSON) shared with ``raftkv status``; client.status.status_exit_code."""
    with SyncClient(eps, timeout=timeout, eager=False, **_SECURITY) as kv:
        nodes = kv.cluster_status()
    if as_json:
        out.write(json.dumps(to_json(nodes)) + "\n")
    else:
        out.write(render_table(nodes, out.color) + "\n")
    return status_exit_code(nodes)
