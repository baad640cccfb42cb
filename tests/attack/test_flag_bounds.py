"""Integer flags past what the node can run with (attack5 branch, round 5). Failed before
the fix.

``--max-request-bytes`` had no upper bound in its click type, but the peer frame limit is
derived from it (twice it plus 1 MiB, in a 4-byte frame header): ``raftkv serve
--max-request-bytes 3000000000`` (or ``2**70`` from a TOML file) started, then died
with a ``ValueError`` traceback out of the trio nursery ("a peer frame holds at most
2146959359 bytes of it"). A value that cannot work must be a usage error naming the
flag, before anything starts (README, Configuration file).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raftkv.cli import serve
from raftkv.node.sizes import FRAME_OVERHEAD, MAX_FRAME_SIZE

pytestmark = pytest.mark.timeout(30)

LARGEST = (MAX_FRAME_SIZE - FRAME_OVERHEAD) // 2


@pytest.mark.parametrize("value", [LARGEST + 1, 3_000_000_000, 2**70])
def test_a_request_size_no_frame_can_carry_is_a_usage_error(tmp_path: Path,
                                                            value: int) -> None:
    result = CliRunner().invoke(serve, [
        "--id", "1", "--data-dir", str(tmp_path / "d"), "--cluster", "1=127.0.0.1:1",
        "--client-addr", "127.0.0.1:1", "--peer-addr", "127.0.0.1:1",  # never bindable
        "--max-request-bytes", str(value)])
    assert result.exit_code == 2, repr(result.exception)
    assert "--max-request-bytes" in result.output


def test_the_largest_request_size_a_frame_carries_is_accepted() -> None:
    param = next(p for p in serve.params if p.name == "max_request_bytes")
    assert param.type.convert(str(LARGEST), param, None) == LARGEST
