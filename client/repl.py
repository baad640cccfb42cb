"""The interactive ``raftkv-cli`` session: prompt, history, completion, help.

On a terminal: a ``raftkv HOST:PORT>`` prompt naming the node the client talks to,
readline editing, history in ``~/.raftkv_history`` and Tab completion of command names.
Without a terminal on stdin: no prompt and no readline, one command per input line, so
``printf 'set a=1\\nget a\\n' | raftkv-cli`` works as a script. Leader changes need nothing
from the user: the client reconnects and retries what is safe to retry.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from client.errors import (
    ConnectionFailed,
    CredentialsRefused,
    DeadlineExceeded,
    RaftKVError,
    ResponseError,
)
from client.format import Output
from client.help import complete, overview, usage
from client.status import render_table
from client.subscribe_cli import is_subscribe, run_subscribe
from client.sync import SyncClient
from client.typed_auth import after_success, typed_credentials
from client.until_stopped import INTERRUPTED
from raftkv.kv import legacy_form
from wire.errors import ProtocolError
from wire.resp import split_args

# Used only by a terminal session (setup_readline): input() takes it only when stdin and
# stdout are terminals, and the module sends no terminal escape when stdout is not one, so
# pipes and one-shot commands are unchanged by importing it here, at the top. A Python
# built without it has None: plain input() still works.
readline = importlib.import_module("readline") if importlib.util.find_spec("readline") else None

HISTORY_FILE = Path("~/.raftkv_history")

# Exit statuses (one-shot mode, and scripted sessions: the worst seen).
OK, ERROR_REPLY, NO_CLUSTER = 0, 1, 2


def parse_line(line: str) -> list[bytes]:
    """A typed line -> command arguments (redis-cli quoting, via ``wire.resp.split_args``)."""
    return legacy_form(split_args(line.encode("utf-8", "surrogateescape")))


# ``HELLO 3`` is refused here, not sent: the server would switch the connection to RESP3,
# which this client's parser does not read (client.connection), so the map it answers
# was a protocol error, reported as UNKNOWN, and the connection was dropped. Switching
# the CLI to RESP3 as redis-cli does would not hold either: the client reopens
# connections on its own (leader changes, retries), each in RESP2, so the switch would be
# undone silently. HELLO 2 (or HELLO alone) still shows the HELLO reply.
HELLO_3_REFUSED = ResponseError(
    "ERR raftkv-cli speaks RESP2 only: HELLO 3 would switch this connection to RESP3, which "
    "it does not read; nothing was sent. Use HELLO 2 (or HELLO) here, or redis-cli -3")


def refused_here(args: list[bytes]) -> ResponseError | None:
    """The error for a command the CLI does not send (``HELLO 3``), else None."""
    if len(args) > 1 and args[0].lower() == b"hello" and args[1] == b"3":
        return HELLO_3_REFUSED
    return None


def exit_status(value: Any) -> int:
    if isinstance(value, ConnectionFailed | DeadlineExceeded):
        return NO_CLUSTER
    return ERROR_REPLY if isinstance(value, RaftKVError) else OK


def setup_readline(history: Path) -> Callable[[], None]:
    """Editing, history and completion for a terminal session; returns the saver."""
    if readline is None:
        return lambda: None
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(1000)

    def completer(text: str, state: int) -> str | None:
        line = readline.get_line_buffer()[: readline.get_endidx()]
        options = complete(line, text)
        return options[state] if state < len(options) else None

    readline.set_completer(completer)
    readline.set_completer_delims(" \t")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")

    def save() -> None:
        with contextlib.suppress(OSError):
            readline.write_history_file(history)

    return save


class Repl:
    def __init__(self, kv: SyncClient, out: Output, interactive: bool) -> None:
        self.kv = kv
        self.out = out
        self.interactive = interactive
        self.status = OK
        self.initial_security = kv.client.security  # the command line's (RESET's)

    def prompt(self) -> str:
        return f"raftkv {self.kv.current_endpoint or 'not connected'}> "

    def run(self) -> int:
        """Read commands until EOF or QUIT; the exit status (scripted sessions only)."""
        save = setup_readline(HISTORY_FILE.expanduser()) if self.interactive else None
        try:
            while True:
                try:
                    line = self.read()
                except KeyboardInterrupt:
                    self.out.write("\n")
                    continue
                if line is None:
                    break
                try:
                    if not self.handle(line):
                        break
                except KeyboardInterrupt:
                    self.out.write("(interrupted)\n")
        finally:
            if save is not None:
                save()
        return OK if self.interactive else self.status

    def read(self) -> str | None:
        if self.interactive:
            try:
                return input(self.prompt())
            except EOFError:
                self.out.write("\n")
                return None
        line = sys.stdin.readline()
        return line.rstrip("\r\n") if line else None

    def handle(self, line: str) -> bool:
        """Run one line; False to end the session."""
        try:
            args = parse_line(line)
        except ProtocolError:
            self.out.error("Invalid argument(s)")
            return True
        if not args:
            return True
        name = args[0].decode("utf-8", "replace").lower()
        if name in ("quit", "exit") and len(args) == 1:
            return False
        if name == "help":
            topic = args[1].decode("utf-8", "replace") if len(args) > 1 else None
            text = overview() if topic is None else usage(topic)
            self.out.write((text or f"no help for {topic!r}; type `help`") + "\n")
            return True
        if name == "clear" and len(args) == 1:
            click.clear()
            return True
        if name == "status" and len(args) == 1:
            self.show_status()
            return True
        if is_subscribe(args):
            self.subscribe(args)
            return True
        value = refused_here(args)
        if value is None:
            try:
                value = self.execute(args)
            except CredentialsRefused as exc:
                value = self.drop_typed_credentials(args, exc)
        self.status = max(self.status, exit_status(value))
        self.out.reply(value)
        return True

    def execute(self, args: list[bytes]) -> Any:
        """The command's reply (or error); a typed AUTH that succeeded then holds for every
        connection the REPL opens (attack22). CredentialsRefused propagates."""
        try:
            value = self.kv.execute(*args)
        except CredentialsRefused:
            raise
        except RaftKVError as exc:
            return exc
        client = self.kv.client
        client.security = after_success(client.security, self.initial_security, args)
        return value

    def drop_typed_credentials(self, args: list[bytes], exc: CredentialsRefused) -> Any:
        """The nodes refuse the credentials of an AUTH typed earlier (its password was
        changed): without this every command, the AUTH with the new password and RESET
        too, failed to connect until the REPL was restarted (attack23). Back to the
        command line's ``--user/--pass`` (or none); a command that sets credentials itself
        (AUTH, HELLO .. AUTH, RESET) is then sent. Any other was not sent, and is not
        re-sent as another user: the user is told, once, and decides."""
        client = self.kv.client
        if client.security == self.initial_security:
            return exc  # the command line's own credentials: nothing to fall back to
        client.security = self.initial_security
        if typed_credentials(args) is not None or [a.lower() for a in args] == [b"reset"]:
            try:
                return self.execute(args)
            except CredentialsRefused as again:
                return again
        self.out.error("the nodes refuse the credentials of the AUTH typed earlier; the "
                       "command was not sent. New connections now use the command line's "
                       "--user/--pass (or none): type AUTH again to change that")
        return exc

    def subscribe(self, args: list[bytes]) -> None:
        """Print messages until Ctrl-C, then back to the prompt. The subscription has a
        connection of its own (client.subscribe_cli), closed on the way out, so the
        session's connection is never left subscribed (attack21)."""
        status = run_subscribe(self.kv.client, args, self.out, self.kv.current_endpoint)
        if status == INTERRUPTED:
            self.out.write("\n")
        else:
            self.status = max(self.status, status)

    def show_status(self) -> None:
        nodes = self.kv.cluster_status()
        self.out.write(render_table(nodes, self.out.color) + "\n")
