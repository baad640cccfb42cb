"""Click parameter types for ``raftkv`` flags that plain click types let through.

``ClusterId``: ``serve``, ``restore`` and ``recover`` all take ``--cluster-id`` and must
refuse alike (attack21: restore wrote ids serve refuses, e.g. ``''`` from an unset shell
variable, into ``meta.json``; the node then ran under an id no ``--join`` node accepts).

``click.FloatRange`` compares with ``<``/``>``, and NaN passes every comparison, so
``--tick-ms nan`` (or TOML's ``nan``/``inf`` literals, or ``RAFTKV_TICK_MS=nan``) reached
the runtime and crashed it, or, for ``inf``, silently stopped the clock. Flags, env vars
and ``--config`` all go through the option's type, so refusing here covers all three.
"""

from __future__ import annotations

import math
from typing import Any

import click

from raftkv.node.cluster_id import CLUSTER_ID_RULE, valid_cluster_id


class FiniteFloatRange(click.FloatRange):
    """A ``FloatRange`` that also refuses NaN and +/-infinity (a usage error naming the flag)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number!r} is not a finite number.", param, ctx)
        return number


class ClusterId(click.ParamType):
    """A cluster id (``valid_cluster_id``); ``""`` only where it means "the default"."""

    name = "cluster id"

    def __init__(self, allow_empty: bool) -> None:
        self.allow_empty = allow_empty

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        text = str(value)
        if (text == "" and self.allow_empty) or valid_cluster_id(text):
            return text
        self.fail(f"{text!r}: {CLUSTER_ID_RULE}", param, ctx)
