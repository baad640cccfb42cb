"""``raftkv restore FILE --data-dir DIR --id I --cluster 1=...,2=... --cluster-id NEW``.

Prepares the data directory of one member of a NEW cluster from a verified backup (like
``etcdutl snapshot restore``): the backup's state becomes the directory's snapshot, the
membership is exactly ``--cluster`` (all voters), and the cluster id is a new one, so a
node of the old cluster that is still running is refused as a peer instead of mixing two
histories. Restore the same file on every member, then start them with the same
``--cluster`` and ``--cluster-id``: they hold exactly the backed-up keys.

The snapshot is not at the backup's index B but ``bump`` past it, and its change feed is
marked compacted there (etcd's ``restore --bump-revision N --mark-compacted``). Change ids
are log indexes: from B the new cluster would issue again the ids B+1, B+2, ... the old
one gave other changes after the backup, and a watcher resuming from one of those got
nothing back, silently, until the new cluster passed it (attack21). Now every id the
new cluster issues is above any the old one could have, and a resume from an older id
gets the feed's "compacted ... resync" error. The state is re-encoded with the new feed,
a piece at a time, so memory holds the decoded state and one piece, never the payload's
bytes beside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import attrs

from raftkv.backup_file import BackupError, BackupHeader, check_state, decode_payload, open_backup
from raftkv.kv.feed import MAX_POSITION, FeedState
from raftkv.kv.state import KVState, snapshot_pieces
from raftkv.node.cluster_id import CLUSTER_ID_RULE, valid_cluster_id
from raftkv.storage import open_storage
from wire.raft import MAX_INDEX, ClusterConfig, HardState, Member, SnapshotMeta

# How far past the backup's index the new cluster's log (and change ids) start: more entries
# than the old cluster can commit after the backup (2**40: a year at 30,000 entries a second,
# about ten times what it sustains here), small enough that thousands of restores in a row
# keep indexes below 2**53 (exact as a float: JSON readers, metrics).
DEFAULT_BUMP = 2**40
PIECE_BYTES = 256 * 1024  # the re-encoded snapshot is written in pieces of this size


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


@attrs.frozen
class Restored:
    header: BackupHeader  # the backup's
    index: int  # the new cluster's snapshot index: its log and change ids go on from here


def restore(path: str, data_dir: str, node_id: int, members: dict[int, str],
            cluster_id: str, bump: int = DEFAULT_BUMP) -> Restored:
    """Write ``data_dir`` (module docstring); ``bump`` >= 1: how far past the backup's
    index the new cluster starts."""
    with open_backup(path) as (header, payload):
        # What verify checks (a state no node can load), decoded as it is read from the
        # file (its checksum checked at the end): the payload's bytes are never in memory
        # beside the decoded state.
        state = decode_payload(path, payload)
        check_state(path, header, state)
    _check_args(header, node_id, members, cluster_id)
    index = bump_past(state, header.index, bump, "this backup")
    # Nor has any member of the new cluster served yet: with the old cluster's published
    # voters, a member whose restore was forgotten was told it had lost its data and to
    # leave under a new id (attack21); each is published again once it serves.
    state.published = set()
    pieces = snapshot_pieces(state, PIECE_BYTES)
    del state  # the pieces' generator holds it until the last piece: freed before the seal
    create_data_dir(data_dir, cluster_id, node_id, config_of(members), index, header.term,
                    pieces)
    return Restored(header, index)


def bump_past(state: KVState, index: int, bump: int, what: str) -> int:
    """Move ``state``, taken at log ``index``, to ``index + bump`` with its change feed
    compacted there, and return that index: every change id a new history issues is then
    above any the old one could have issued, and a resume from an old id gets "compacted
    ... resync" rather than silently nothing (module docstring). Shared by ``restore`` and
    ``recover --force-new-cluster`` (whose lost nodes may have issued ids past the
    survivor's last entry). ``what`` names ``index``'s source in the range error."""
    new = index + bump
    if bump < 1 or new > MAX_INDEX:
        raise RestoreError(f"--bump-index {bump}: from 1 to {MAX_INDEX - index} for "
                           f"{what} (index {index})")
    # The old ids up to ``new`` are compacted: the tail retained is history the new
    # cluster does not continue.
    state.feed = FeedState((new, MAX_POSITION))
    return new


def check_cluster_id(cluster_id: str) -> None:
    """Refuse an id ``serve`` would refuse: the cluster written could never be joined."""
    if not valid_cluster_id(cluster_id):
        raise RestoreError(f"--cluster-id {cluster_id!r}: {CLUSTER_ID_RULE}")


def _check_args(header: BackupHeader, node_id: int, members: dict[int, str],
                cluster_id: str) -> None:
    if node_id not in members:
        raise RestoreError(f"--id {node_id} is not in --cluster")
    check_cluster_id(cluster_id)
    if cluster_id == header.cluster_id:
        raise RestoreError(
            f"--cluster-id {cluster_id!r} is the backed-up cluster's id; a restored cluster "
            "is a new cluster: give it a new id (and start its nodes with it)")


__all__ = ["DEFAULT_BUMP", "BackupError", "RestoreError", "Restored", "bump_past",
           "check_cluster_id", "config_of", "create_data_dir", "restore"]
