"""A config file that nests deeply is a traceback, not a usage error (attack6).

``--config`` files are read with ``tomllib``, whose parser recurses once per nested array
or inline table. A 10 KB file well under the 1 MiB bound, ``a = [[[[...]]]]`` 5,000 deep,
made ``raftkv serve --config FILE`` die with ``RecursionError: maximum recursion depth
exceeded`` and a page of traceback (exit 1), where every other bad file is one usage error
naming the flag (exit 2). The same for inline tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raftkv.cli import serve

DEPTH = 5_000


@pytest.mark.parametrize("value", ["[" * DEPTH + "]" * DEPTH,
                                   "{a = " * DEPTH + "1" + "}" * DEPTH])
def test_a_deeply_nested_config_is_a_usage_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(f"id = {value}\n")
    result = CliRunner().invoke(serve, [
        "--config", str(path), "--data-dir", str(tmp_path / "d"),
        "--cluster", "1=127.0.0.1:1"])
    assert result.exit_code == 2, repr(result.exception)
    assert "--config" in result.output and "deep.toml" in result.output
