"""Replies as redis-cli shows them: quoted strings, ``(nil)``, ``(integer) 3``, numbered
arrays with redis-cli's nested indentation; ``raw`` (plain values) and ``json`` modes.

Errors arrive as ``RaftKVError`` instances (what the client returns in place of a reply).
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import click

from client.errors import RaftKVError, ResponseError
from wire.reply import ErrorReply, SimpleString

TTY, RAW, JSON = "tty", "raw", "json"

_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\r"): "\\r",
            ord("\t"): "\\t", 7: "\\a", 8: "\\b"}


def quote(data: bytes) -> str:
    """redis-cli's ``sdscatrepr``: printable ASCII as is, the rest escaped, in quotes."""
    out = ['"']
    for c in data:
        esc = _ESCAPES.get(c)
        if esc is not None:
            out.append(esc)
        elif 32 <= c < 127:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    out.append('"')
    return "".join(out)


def error_text(value: Any) -> str:
    if isinstance(value, ResponseError | ErrorReply):
        return value.text
    return str(value)


def is_error(value: Any) -> bool:
    return isinstance(value, RaftKVError | ErrorReply)


def format_reply(value: Any, mode: str = TTY) -> str:
    """One reply as text, without the final newline."""
    if mode == JSON:
        return json.dumps(to_json(value))
    if mode == RAW:
        # redis-cli ends a raw error with its own newline before the usual one.
        return _raw(value) + ("\n" if is_error(value) else "")
    return _tty(value, "").rstrip("\n")


def _tty(value: Any, prefix: str) -> str:
    if is_error(value):
        return f"(error) {error_text(value)}\n"
    if value is None:
        return "(nil)\n"
    if isinstance(value, bool):
        return f"({str(value).lower()})\n"
    if isinstance(value, int):
        return f"(integer) {value}\n"
    if isinstance(value, float):
        return f"(double) {value!r}\n"
    if isinstance(value, SimpleString):
        return value.text + "\n"
    if isinstance(value, bytes):
        return quote(value) + "\n"
    if isinstance(value, dict):
        value = [x for pair in value.items() for x in pair]
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if not items:
            return "(empty array)\n"
        width = len(str(len(items)))
        child_prefix = prefix + " " * (width + 2)
        out = []
        for i, item in enumerate(items):
            # redis-cli: the first element follows the parent's index on the same line.
            out.append(f"{'' if i == 0 else prefix}{i + 1:>{width}}) ")
            out.append(_tty(item, child_prefix))
        return "".join(out)
    return str(value) + "\n"


def _raw(value: Any) -> str:
    if is_error(value):
        return error_text(value)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, SimpleString):
        return value.text
    if isinstance(value, dict):
        value = [x for pair in value.items() for x in pair]
    if isinstance(value, list | tuple | set | frozenset):
        return "\n".join(_raw(item) for item in value)
    return str(value)


def to_json(value: Any) -> Any:
    """A reply as JSON data: strings for bulk and status replies, ``{"error": text}``."""
    if is_error(value):
        return {"error": error_text(value)}
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, SimpleString):
        return value.text
    if isinstance(value, dict):
        return {str(to_json(k)): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    return value


@attrs.define
class Output:
    """Where the CLI and REPL print: a format mode, and colour only when asked for."""

    mode: str = TTY
    color: bool = False

    def reply(self, value: Any) -> None:
        text = format_reply(value, self.mode)
        if self.color and is_error(value):
            text = click.style(text, fg="red")
        self.write(text + "\n")

    def write(self, text: str, err: bool = False) -> None:
        # Raw values may hold any bytes (kept as surrogates), so write bytes, not text.
        click.echo(text.encode("utf-8", "surrogateescape"), nl=False, err=err)

    def error(self, text: str) -> None:
        self.write((click.style(text, fg="red") if self.color else text) + "\n", err=True)
