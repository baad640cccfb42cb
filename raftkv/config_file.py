"""``--config FILE``: a TOML file whose keys are the command's flag names.

Read with the standard library's ``tomllib`` and handed to click as the command's
``default_map``, so a setting has one name everywhere (``client-addr`` in the file,
``--client-addr`` on the command line, ``RAFTKV_CLIENT_ADDR`` in the environment) and
click's own precedence applies: flag > environment variable > file > built-in default.

Validation: an unknown key, or a value of the wrong shape, is an error naming the key (a
typo must not silently fall back to a default). A value must have its option's TOML type
(an integer for an integer option, a number for a float one, a boolean for a flag, a string
otherwise): click's ``INT`` calls ``int()`` on whatever it gets, so ``heartbeat-ticks =
2.9`` was silently 2, ``id = true`` node 1, and ``election-ticks = inf`` a traceback
(attack5). Values then go through the option's click type like a flag's text would. Lists
are accepted for the comma-separated flags (``join``), and a table for ``cluster``
(``[cluster]`` with ``1 = "host:port"`` lines).
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


def _check_type(key: str, value: Any, param: click.Parameter) -> None:
    """Refuse a TOML value whose type is not the option's (module docstring)."""
    kind = param.type
    if isinstance(kind, click.types.BoolParamType):
        ok, want = type(value) is bool, "a boolean (true or false)"
    elif isinstance(kind, click.types.IntParamType):
        ok, want = type(value) is int, "an integer"
    elif isinstance(kind, click.types.FloatParamType):
        ok, want = type(value) in (int, float), "a number"
    else:
        ok, want = not isinstance(value, bool | int | float), "a string"
    if not ok:
        raise click.BadParameter(f"{key!r} must be {want}, not {value!r}")


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
    except RecursionError:  # tomllib recurses per nested array or inline table (attack6)
        raise click.BadParameter(f"{path} nests arrays or tables too deeply") from None
    keys = option_keys(command)
    params = {p.name: p for p in command.params}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = keys.get(key) or keys.get(key.replace("_", "-"))
        if name is None:
            raise click.BadParameter(
                f"{path}: unknown setting {key!r}; valid settings: {', '.join(sorted(keys))}")
        _check_type(key, value, params[name])
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
