"""Hostile numbers in ``raftkv serve`` flags, ``RAFTKV_*`` variables and ``--config``
TOML (attack2 branch, round 2). Fail today.

Float options are ``click.FloatRange(min=...)``, and NaN passes every comparison: TOML
has ``nan`` and ``inf`` literals, and the flags take ``nan`` too. Live:

* ``--tick-ms nan``: the node exits at start with a traceback (``deadline must not be NaN``);
* ``--tick-ms inf`` (or ``1e308``): the node starts, listens, and never ticks: no leader, ever,
  every write ``-TRYAGAIN``, with no error anywhere;
* ``--idle-timeout nan`` / ``--first-command-timeout nan``: the node runs, and every client
  connection is dropped by a ``ValueError`` in its handler;
* ``--election-ticks 2**70`` (attack5): the node starts and never elects (as ``inf`` ticks);
* ``--heartbeat-ticks 5 --election-ticks 2``: a traceback (``ValueError``) instead of a usage
  error.
A value that cannot work must be a usage error naming the flag, before anything starts.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from raftkv.cli import serve

pytestmark = pytest.mark.timeout(30)

FLOAT_OPTIONS = sorted(p.name for p in serve.params
                       if isinstance(p, click.Option) and isinstance(p.type, click.FloatRange))


def _param(name: str) -> click.Option:
    return next(p for p in serve.params if p.name == name)  # type: ignore[return-value]


@pytest.mark.parametrize("name", FLOAT_OPTIONS)
def test_nan_is_not_a_valid_duration(name: str) -> None:
    param = _param(name)
    with pytest.raises(click.BadParameter):
        param.type.convert("nan", param, None)


def test_infinite_tick_is_refused() -> None:
    param = _param("tick_ms")
    with pytest.raises(click.BadParameter):
        param.type.convert("inf", param, None)


def test_heartbeat_not_below_election_is_a_usage_error(tmp_path) -> None:
    result = CliRunner().invoke(serve, [
        "--id", "1", "--data-dir", str(tmp_path / "d"), "--cluster", "1=127.0.0.1:1",
        "--client-addr", "127.0.0.1:1", "--peer-addr", "127.0.0.1:1",
        "--heartbeat-ticks", "5", "--election-ticks", "2"])
    assert result.exit_code == 2, (result.exit_code, result.output[-500:], result.exception)


@pytest.mark.parametrize("ticks, tick_ms", [(str(2**70), "10"), ("5001", "10"), ("4", "15000")])
def test_election_timeout_over_50_s_is_a_usage_error(tmp_path, ticks: str, tick_ms: str) -> None:
    result = CliRunner().invoke(serve, [
        "--id", "1", "--data-dir", str(tmp_path / "d"), "--cluster", "1=127.0.0.1:1",
        "--client-addr", "127.0.0.1:1", "--peer-addr", "127.0.0.1:1",
        "--election-ticks", ticks, "--heartbeat-ticks", "1", "--tick-ms", tick_ms])
    assert result.exit_code == 2, (result.exit_code, result.output[-500:], result.exception)
    assert "election timeout" in result.output
