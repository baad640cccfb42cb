"""One live 3-node cluster shared by the client tests that do not kill nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("client-cluster")) as c:
        c.wait_for_leader()
        yield c


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of the test's own, for tests that kill or pause nodes."""
    with LocalCluster(tmp_path) as c:
        c.wait_for_leader()
        yield c

