"""``raftkv serve --write-run N`` (raftkv.server.write_runs): a count of at least 1 and at
most a transaction's commands reaches the node; anything else is a usage error, before
any node starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import raftkv.serve
from raftkv.cli import serve

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("value, code", [("0", 2), ("-3", 2), ("x", 2), ("100001", 2),
                                         ("1", 0), ("64", 0)])
def test_write_run_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              value: str, code: int) -> None:
    started: list[object] = []
    monkeypatch.setattr(raftkv.serve, "run_node", started.append)
    result = CliRunner().invoke(serve, [
        "--id", "1", "--data-dir", str(tmp_path / "d"), "--client-addr", "127.0.0.1:7001",
        "--peer-addr", "127.0.0.1:7101", "--cluster", "1=127.0.0.1:7101",
        "--write-run", value])
    assert result.exit_code == code, result.output
    if code:
        assert not started and "--write-run" in result.output
    else:
        assert [getattr(s, "write_run", None) for s in started] == [int(value)]
