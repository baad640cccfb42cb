"""``--config FILE``: a TOML file whose keys are the command's flag names.

Read with the standard library's ``tomllib`` and handed to click as the command's
``default_map``, so a setting has one name everywhere (``client-addr`` in the file,
``--client-addr`` on the command line, ``RAFTKV_CLIENT_ADDR`` in the environment) and
click's own precedence applies: flag > environment variable > file > built-in default.

Validation: an unknown key, or a value of the wrong shape, is an error naming the key (a
typo must not silently fall back to a default). Values go through the option's click type
like a flag's text would. Lists are accepted for the comma-separated flags (``join``), and
a table for ``cluster`` (``[cluster]`` with ``1 = "host:port"`` lines).
"""

from __future__ import annotations

import tomllib
from typing import Any

import click

MAX_CONFIG_BYTES = 1024 * 1024


def option_keys(command: click.Command) -> dict[str, str]:
    """File key -> parameter name: every long flag without its dashes (``client-addr``)."""
    keys: dict[str, str] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in (None, "config"):
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:]] = param.name
    return keys


def _value(key: str, value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if key == "cluster" and isinstance(value, dict):
        items = []
        for ident, addr in value.items():
            if not isinstance(addr, str):
                raise click.BadParameter(f"cluster.{ident} must be a \"host:port\" string")
            items.append(f"{ident}={addr}")
        return ",".join(items)
    raise click.BadParameter(f"{key!r}: unsupported value {value!r} (use a string, "
                             "number, boolean or list of strings)")


def read_config(path: str, command: click.Command) -> dict[str, Any]:
    """The file's settings as ``{parameter name: value}`` for ``default_map``."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise click.BadParameter(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}") from None
    keys = option_keys(command)
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = keys.get(key) or keys.get(key.replace("_", "-"))
        if name is None:
            raise click.BadParameter(
                f"{path}: unknown setting {key!r}; valid settings: {', '.join(sorted(keys))}")
        out[name] = _value(key, value)
    return out


def load_config_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Eager ``--config`` callback: the file becomes the defaults of the other options."""
    if not value:
        return
    settings = read_config(value, ctx.command)
    ctx.default_map = {**(ctx.default_map or {}), **settings}


def config_option(f: Any) -> Any:
    return click.option(
        "--config", type=click.Path(dir_okay=False), envvar="RAFTKV_CONFIG",
        is_eager=True, expose_value=False, callback=load_config_option,
        help="TOML file of settings named like the flags (client-addr = \"...\"). "
             "Precedence: flag > RAFTKV_* env > file > default.")(f)
