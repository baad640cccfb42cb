"""``raftkv recover --data-dir DIR --id I --force-new-cluster``: the way out when a
majority of the voters is lost for good (etcd's ``--force-new-cluster``).

It turns one surviving node's data into a one-node cluster that can grow again with
``raftkv member add`` / ``serve --join``:

1. open the survivor's stopped data directory (its lock proves no node runs on it);
2. rebuild the state: its snapshot, then *every* entry in its log, including entries past
   the commit index it knew: such an entry may have been committed and acknowledged by a
   leader that is now gone, and keeping it is the only way not to lose it (an entry that
   was in fact never committed was never acknowledged, so its client saw -UNKNOWN at worst);
3. move the directory aside to ``DIR.before-recover-<UTC time>`` (nothing is deleted) and
   write a new ``DIR`` whose snapshot holds that state and whose only member is node I.

The new directory's snapshot is not at the survivor's last index L but ``bump`` (default
2^40, ``--bump-index``) past it, its change feed compacted there, as ``raftkv restore``
does (``restore.bump_past``): change ids are log indexes, and the lost nodes may have
issued ids past L (entries only they had); from L the new cluster would issue them again
for other changes, and a watcher of those nodes resuming from its last id would miss
changes silently. Now such a resume gets "change feed compacted ... resync".

What it cannot do: bring back writes that only the lost nodes had. Pick the survivor with
the highest last log index (``raftkv status`` before the loss, or the INFO of the
survivors), and never restart a lost node with its old data afterwards.
"""

from __future__ import annotations

import os
import time

import attrs

from raftkv.kv import KVDecodeError, KVStateMachine, decode_snapshot_stream
from raftkv.kv.state import snapshot_pieces
from raftkv.restore import (
    DEFAULT_BUMP,
    PIECE_BYTES,
    RestoreError,
    bump_past,
    check_cluster_id,
    config_of,
    create_data_dir,
)
from raftkv.storage import open_storage
from raftkv.storage.meta import read_meta
from wire.addr import parse_addr
from wire.raft import NORMAL, ClusterConfig


@attrs.frozen
class Recovered:
    index: int  # the new directory's snapshot index: its log and change ids go on from here
    last: int  # the survivor's last log index (what it held)
    term: int
    keys: int
    beyond_commit: int  # entries kept past the commit index the survivor knew
    peer_addr: str
    cluster_id: str
    old_dir: str


def _peer_addr(config: ClusterConfig, node_id: int, override: str) -> str:
    if override:
        try:
            parse_addr(override)
        except ValueError as exc:
            raise RestoreError(f"--peer-addr: {exc}") from None
        return override
    for member in config.members:
        if member.id == node_id:
            return member.peer_addr
    raise RestoreError(f"node {node_id} is not a member in this data directory's "
                       "configuration; give --peer-addr")


def recover(data_dir: str, node_id: int, cluster_id: str = "",
            peer_addr: str = "", bump: int = DEFAULT_BUMP) -> Recovered:
    """Rewrite ``data_dir`` (module docstring); ``bump`` >= 1: how far past the
    survivor's last index the new cluster starts. Everything is checked before the
    directory is moved aside."""
    if cluster_id:
        check_cluster_id(cluster_id)
    meta = read_meta(data_dir)
    if meta is None:
        raise RestoreError(f"{data_dir} is not a RaftKV data directory")
    if meta.node_id != node_id:
        raise RestoreError(f"{data_dir} belongs to node {meta.node_id}, not --id {node_id}")
    storage = open_storage(data_dir, meta.cluster_id, node_id, ClusterConfig(), fsync="always")
    try:
        hs, config = storage.initial_state()
        snap = storage.snapshot_meta()
        kv = KVStateMachine()
        if snap.index > 0:
            try:
                kv.replace(storage.decode_snapshot(decode_snapshot_stream))
            except KVDecodeError as exc:  # intact (checksum) but unreadable: refuse, no trace
                raise RestoreError(f"{data_dir}: the snapshot's state does not decode "
                                   f"({exc})") from None
        kv.feed.restored_at(snap.index)  # the change feed's ids are log indexes
        last = storage.last_index()
        for entry in storage.entries(snap.index + 1, last + 1):
            if entry.kind == NORMAL:
                kv.apply(entry.data, entry.index)
        last_term = storage.term(last) if last > snap.index else snap.term
        addr = _peer_addr(config, node_id, peer_addr)
    finally:
        storage.close(sync=False)
    keys = len(kv)
    state = kv.snapshot_state()
    del kv
    index = bump_past(state, last, bump, "this survivor's log")
    pieces = snapshot_pieces(state, PIECE_BYTES)
    del state  # the pieces' generator holds it until the last piece (as restore does)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    old_dir = f"{data_dir.rstrip('/')}.before-recover-{stamp}"
    os.rename(data_dir, old_dir)
    new_id = cluster_id or meta.cluster_id
    create_data_dir(data_dir, new_id, node_id, config_of({node_id: addr}), index, last_term,
                    pieces, current_term=hs.term)
    return Recovered(index=index, last=last, term=max(hs.term, last_term), keys=keys,
                     beyond_commit=max(0, last - hs.commit),
                     peer_addr=addr, cluster_id=new_id, old_dir=old_dir)
