"""``raftkv serve`` refuses a peer address that is not its own ``--cluster`` entry (session
11), as etcd refuses ``--initial-advertise-peer-urls`` that differ from the member's
``--initial-cluster`` entry. Before, ``--peer-addr 127.0.0.1:7201`` with ``--cluster
1=127.0.0.1:7101`` started: the other nodes dial 7101, where nothing listens."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import raftkv.serve
from raftkv.cli import serve
from raftkv.node.settings import check_own_entry
from raftkv.storage import open_storage
from wire.raft import ClusterConfig, Member

pytestmark = pytest.mark.timeout(30)

CLUSTER = {1: "127.0.0.1:7101", 2: "127.0.0.1:7102"}


@pytest.fixture(autouse=True)
def no_node(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """A start that got past the checks is recorded, not run."""
    started: list[object] = []
    monkeypatch.setattr(raftkv.serve, "run_node", started.append)
    return started


def _serve(tmp_path: Path, *flags: str) -> tuple[int, str]:
    result = CliRunner().invoke(serve, [
        "--id", "1", "--data-dir", str(tmp_path / "d"), "--client-addr", "127.0.0.1:7001",
        "--cluster", "1=127.0.0.1:7101,2=127.0.0.1:7102", *flags])
    return result.exit_code, result.output


def test_a_peer_addr_that_is_not_the_nodes_entry_is_a_usage_error(tmp_path: Path) -> None:
    code, output = _serve(tmp_path, "--peer-addr", "127.0.0.1:7201")
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert lines == ["Error: --peer-addr 127.0.0.1:7201 differs from node 1's entry in "
                     "--cluster (127.0.0.1:7101); they must be the same address"], output
    assert not (tmp_path / "d").exists()


def test_the_default_peer_addr_is_checked_too(tmp_path: Path) -> None:
    code, output = _serve(tmp_path, "--id", "2")  # the default --peer-addr is ...:7101
    assert code == 2 and "--peer-addr 127.0.0.1:7101 differs from node 2's entry" in output


def test_the_matching_address_starts(tmp_path: Path, no_node: list[object]) -> None:
    code, output = _serve(tmp_path, "--peer-addr", "127.0.0.1:7101")
    assert code == 0 and len(no_node) == 1, output


def test_an_advertised_address_is_what_must_match() -> None:
    check_own_entry(1, CLUSTER, "0.0.0.0:7101", "127.0.0.1:7101")  # listen on all: fine
    check_own_entry(1, CLUSTER, "0.0.0.0:7101")  # a listen address: its port is the entry's
    with pytest.raises(ValueError, match=r"--peer-addr 0\.0\.0\.0:7201 differs"):
        check_own_entry(1, CLUSTER, "0.0.0.0:7201")
    check_own_entry(1, {1: "[::1]:7101"}, "[0:0::1]:7101")  # the same, spelled otherwise
    check_own_entry(3, CLUSTER, "127.0.0.1:9")  # not in --cluster (--join): nothing to match
    with pytest.raises(ValueError, match=r"--advertise-peer-addr 127.0.0.2:7101 differs .*"
                                         r"\(127.0.0.1:7101\)"):
        check_own_entry(1, CLUSTER, "127.0.0.1:7101", "127.0.0.2:7101")


def test_a_restart_ignores_a_stale_cluster_entry(tmp_path: Path, no_node: list[object]) -> None:
    """A node restarted on its data directory ignores --cluster (README): an entry there
    older than ``raftkv recover --peer-addr NEW`` (an old unit file) must not stop it."""
    config = ClusterConfig((Member(1, "127.0.0.1:7201"), Member(2, "127.0.0.1:7102")))
    open_storage(tmp_path / "d", "abc", 1, config, fsync="never").close()
    code, output = _serve(tmp_path, "--peer-addr", "127.0.0.1:7201")
    assert code == 0 and len(no_node) == 1, output
