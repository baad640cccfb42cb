"""Every ``--cluster-id`` flag refuses alike: ``serve``, ``restore`` and ``recover`` share
one parameter type (``ClusterId``), and the library calls behind restore/recover check too,
so no tool writes an id into ``meta.json`` that ``serve`` would refuse (attack21)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from raftkv.cli import recover, restore, serve
from raftkv.recover import recover as do_recover
from raftkv.restore import RestoreError, check_cluster_id

pytestmark = pytest.mark.timeout(30)


def _param(command: click.Command) -> click.Option:
    return next(p for p in command.params if p.name == "cluster_id")  # type: ignore[return-value]


@pytest.mark.parametrize("command", [serve, restore, recover])
@pytest.mark.parametrize("bad", ["a b", "x" * 65, "a/b", "id\n"])
def test_every_cluster_id_flag_refuses_the_same_ids(command: click.Command, bad: str) -> None:
    param = _param(command)
    with pytest.raises(click.BadParameter):
        param.type.convert(bad, param, None)
    assert param.type.convert("ok-1.2_3", param, None) == "ok-1.2_3"


def test_empty_means_the_default_except_for_restore() -> None:
    for command in (serve, recover):
        assert _param(command).type.convert("", _param(command), None) == ""
    with pytest.raises(click.BadParameter):
        _param(restore).type.convert("", _param(restore), None)


def test_serve_names_the_flag(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve, [
        "--id", "1", "--data-dir", str(tmp_path / "d"), "--cluster", "1=127.0.0.1:1",
        "--client-addr", "127.0.0.1:1", "--peer-addr", "127.0.0.1:1", "--cluster-id", "a b"])
    assert result.exit_code == 2 and "--cluster-id" in result.output, result.output
    assert not (tmp_path / "d").exists()


def test_the_library_calls_refuse_before_touching_the_directory(tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match="--cluster-id"):
        check_cluster_id("")
    with pytest.raises(RestoreError, match="--cluster-id"):
        do_recover(str(tmp_path / "missing"), 1, cluster_id="a b")  # not "not a data dir"
