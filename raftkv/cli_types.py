"""Click parameter types for ``raftkv`` flags that plain click types let through.

``click.FloatRange`` compares with ``<``/``>``, and NaN passes every comparison, so
``--tick-ms nan`` (or TOML's ``nan``/``inf`` literals, or ``RAFTKV_TICK_MS=nan``) reached
the runtime and crashed it, or, for ``inf``, silently stopped the clock. Flags, env vars
and ``--config`` all go through the option's type, so refusing here covers all three.
"""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloatRange(click.FloatRange):
    """A ``FloatRange`` that also refuses NaN and +/-infinity (a usage error naming the flag)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number!r} is not a finite number.", param, ctx)
        return number
