"""``raftkv restore`` and ``raftkv recover`` take any ``--cluster-id``, one the rest of
RaftKV refuses (attack21).

``raftkv serve --cluster-id`` accepts 1-64 of ``[A-Za-z0-9._-]``, and a ``--join`` node
takes a member's cluster id only if it is such a one (``valid_cluster_id``). ``restore``
(and ``recover``'s optional new id) write whatever they are given into ``meta.json``.
Live, with a real backup: ``raftkv restore b.bak --data-dir n2 --id 2 --cluster ...
--cluster-id ''`` (a shell variable left unset) or ``--cluster-id 'restored 2026-12'``
prints "restored 4 keys" and a start command (``--cluster-id  --client-addr HOST:PORT``:
pasted, the id becomes ``--client-addr``) that serve refuses ("1 to 64 of A-Z a-z 0-9
. _ -"); started without the flag the node runs under the stored id, and then no node can
ever ``--join`` that cluster: the joiner asks the members, finds no valid cluster id and
exits after 60 s. Two clusters restored with ``''`` also accept each other's peers.

Right: refuse the id before writing anything, with serve's own rule for the same flag
(``valid_cluster_id``), naming ``--cluster-id``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from backup_helpers import write_backup
from click.testing import CliRunner

from raftkv.cli import main
from raftkv.kv import KVStateMachine
from raftkv.kv.codec import encode_entry

CLUSTER = "1=127.0.0.1:21201,2=127.0.0.1:21202,3=127.0.0.1:21203"
BAD_IDS = ["", "restored 2026-12", "a/../b", "x" * 65, "id\nrole:leader"]


def _backup(tmp_path: Path) -> str:
    kv = KVStateMachine()
    kv.apply(encode_entry([b"SET", b"a", b"1"], 1), index=5)
    return write_backup(tmp_path / "b.bak", kv.snapshot())


@pytest.mark.parametrize("cluster_id", BAD_IDS)
def test_restore_refuses_a_cluster_id_serve_would_refuse(tmp_path: Path,
                                                        cluster_id: str) -> None:
    data_dir = tmp_path / "n1"
    result = CliRunner().invoke(main, ["restore", _backup(tmp_path), "--data-dir",
                                       str(data_dir), "--id", "1", "--cluster", CLUSTER,
                                       "--cluster-id", cluster_id])
    assert result.exit_code != 0, result.output
    assert "--cluster-id" in result.output
    assert not data_dir.exists() or not os.listdir(data_dir)


def test_a_good_cluster_id_still_restores(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["restore", _backup(tmp_path), "--data-dir",
                                       str(tmp_path / "n1"), "--id", "1", "--cluster",
                                       CLUSTER, "--cluster-id", "restored-2026.12_a"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("cluster_id", BAD_IDS[1:])  # '' means "keep the old id" here
def test_recover_refuses_a_cluster_id_serve_would_refuse(tmp_path: Path,
                                                        cluster_id: str) -> None:
    data_dir = tmp_path / "n1"
    made = CliRunner().invoke(main, ["restore", _backup(tmp_path), "--data-dir",
                                     str(data_dir), "--id", "1", "--cluster", CLUSTER,
                                     "--cluster-id", "good"])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(main, ["recover", "--data-dir", str(data_dir), "--id", "1",
                                       "--force-new-cluster", "--cluster-id", cluster_id])
    assert result.exit_code != 0, result.output
    assert '"cluster_id": "good"' in (data_dir / "meta.json").read_text()


@pytest.mark.parametrize("peer_addr", ["nohost", "127.0.0.1:99999", "127.0.0.1:0"])
def test_recover_refuses_a_peer_addr_serve_would_refuse(tmp_path: Path,
                                                        peer_addr: str) -> None:
    """The same for ``recover --peer-addr`` (live: ``--peer-addr nohost`` recovered, and
    printed ``raftkv serve ... --peer-addr nohost``, which serve refuses)."""
    data_dir = tmp_path / "n1"
    made = CliRunner().invoke(main, ["restore", _backup(tmp_path), "--data-dir",
                                     str(data_dir), "--id", "1", "--cluster", CLUSTER,
                                     "--cluster-id", "good"])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(main, ["recover", "--data-dir", str(data_dir), "--id", "1",
                                       "--force-new-cluster", "--peer-addr", peer_addr])
    assert result.exit_code != 0, result.output
    assert "--peer-addr" in result.output
