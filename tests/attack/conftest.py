"""Fixtures shared by the attack tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A fresh 3-node cluster (fsync never) with a leader; a test module that needs other
    flags or a longer-lived cluster defines its own ``cluster``."""
    with LocalCluster(tmp_path, fsync="never") as c:
        c.wait_for_leader()
        yield c
