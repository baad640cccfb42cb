"""``--config`` TOML values of the wrong type (attack5 branch, round 5). Failed before the fix.

The README says "an unknown key or a value of the wrong type is an error naming it", but
``read_config`` passed any TOML number or boolean through to click, whose ``INT`` type
calls ``int()`` on it. Live, with ``raftkv serve --config FILE``:

* ``election-ticks = inf``: a traceback (``OverflowError: cannot convert float infinity
  to integer``), not a usage error;
* ``heartbeat-ticks = 2.9``: silently 2; ``id = true``: silently node 1;
  ``tick-ms = true``: silently a 1 ms tick.

A TOML value must have the option's type: an integer (not a boolean, not a float) for an
integer option, a number (not a boolean) for a float option, a boolean for a flag.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from raftkv.cli import serve
from raftkv.config_file import read_config

pytestmark = pytest.mark.timeout(30)

WRONG = ["election-ticks = inf", "election-ticks = 1e30", "heartbeat-ticks = 2.9",
         "id = true", "max-clients = 10.0", "tick-ms = true", "insecure = 1",
         "client-addr = 7001"]
RIGHT = {"election-ticks = 20": ("election_ticks", 20), "tick-ms = 10": ("tick_ms", 10),
         "tick-ms = 2.5": ("tick_ms", 2.5), "insecure = true": ("insecure", True),
         'client-addr = "127.0.0.1:7001"': ("client_addr", "127.0.0.1:7001")}


def _file(tmp_path: Path, line: str) -> str:
    path = tmp_path / "raftkv.toml"
    path.write_text(line + "\n")
    return str(path)


@pytest.mark.parametrize("line", WRONG)
def test_a_value_of_the_wrong_type_is_an_error_naming_it(tmp_path: Path, line: str) -> None:
    key = line.split(" ")[0]
    with pytest.raises(click.BadParameter, match=key):
        read_config(_file(tmp_path, line), serve)


@pytest.mark.parametrize("line", sorted(RIGHT))
def test_values_of_the_right_type_still_load(tmp_path: Path, line: str) -> None:
    name, value = RIGHT[line]
    assert read_config(_file(tmp_path, line), serve) == {name: value}


def test_infinity_for_an_integer_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve, [
        "--config", _file(tmp_path, "election-ticks = inf"), "--id", "1",
        "--data-dir", str(tmp_path / "d"), "--cluster", "1=127.0.0.1:1"])
    assert result.exit_code == 2, repr(result.exception)
    assert "election-ticks" in result.output
