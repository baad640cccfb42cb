"""``raftkv restore FILE --data-dir DIR --id I --cluster 1=...,2=... --cluster-id NEW``.

Prepares the data directory of one member of a NEW cluster from a verified backup (like
``etcdutl snapshot restore``): the backup's state becomes the directory's snapshot at the
backup's index and term, the membership is exactly ``--cluster`` (all voters), and the
cluster id is a new one, so a node of the old cluster that is still running is refused as
a peer instead of mixing two histories. Restore the same file on every member, then start
them with the same ``--cluster`` and ``--cluster-id``: they hold exactly the backed-up keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from raftkv.backup_file import BackupError, BackupHeader, check_state, decode_payload, open_backup
from raftkv.node.cluster_id import valid_cluster_id
from raftkv.storage import open_storage
from wire.raft import ClusterConfig, HardState, Member, SnapshotMeta


class RestoreError(Exception):
    pass


def config_of(members: dict[int, str]) -> ClusterConfig:
    return ClusterConfig(tuple(Member(i, addr) for i, addr in sorted(members.items())))


def create_data_dir(data_dir: str, cluster_id: str, node_id: int, config: ClusterConfig,
                    index: int, term: int, payload: bytes | Iterable[bytes],
                    current_term: int = 0) -> None:
    """A new data directory whose state is ``payload`` (the bytes, or their pieces in
    order) at (``index``, ``term``): snapshot (with ``config``), hard state term
    ``max(term, current_term)`` and commit ``index``; durable on return."""
    if os.path.exists(data_dir) and os.listdir(data_dir):
        raise RestoreError(f"{data_dir} exists and is not empty; restore needs a new directory")
    storage = open_storage(data_dir, cluster_id, node_id, config, fsync="always")
    try:
        if index > 0:
            storage.install_snapshot(SnapshotMeta(index, term, config), payload)
        storage.set_hard_state(HardState(term=max(term, current_term), vote=0, commit=index))
        storage.sync()
    finally:
        storage.close()


def restore(path: str, data_dir: str, node_id: int, members: dict[int, str],
            cluster_id: str) -> BackupHeader:
    with open_backup(path) as (header, payload):
        # What verify checks (a state no node can load), decoded as it is read from the
        # file: the payload's bytes are never in memory beside the decoded state.
        check_state(path, header, decode_payload(path, payload))
        _check_args(header, node_id, members, cluster_id)
        # The snapshot is written from the file in pieces, its checksum checked again
        # before the snapshot is sealed (a file changed since is refused, nothing written).
        payload.rewind()
        create_data_dir(data_dir, cluster_id, node_id, config_of(members), header.index,
                        header.term, payload.pieces())
    return header


def check_cluster_id(cluster_id: str) -> None:
    """Refuse an id ``serve`` would refuse: the cluster written could never be joined."""
    if not valid_cluster_id(cluster_id):
        raise RestoreError(f"--cluster-id {cluster_id!r}: a cluster id is 1 to 64 of "
                           "A-Z a-z 0-9 . _ -")


def _check_args(header: BackupHeader, node_id: int, members: dict[int, str],
                cluster_id: str) -> None:
    if node_id not in members:
        raise RestoreError(f"--id {node_id} is not in --cluster")
    check_cluster_id(cluster_id)
    if cluster_id == header.cluster_id:
        raise RestoreError(
            f"--cluster-id {cluster_id!r} is the backed-up cluster's id; a restored cluster "
            "is a new cluster: give it a new id (and start its nodes with it)")


__all__ = ["BackupError", "RestoreError", "check_cluster_id", "config_of", "create_data_dir",
           "restore"]
