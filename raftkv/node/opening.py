"""Opening a node's data: which cluster it belongs to, its storage, its peer transport.

The steps before the loops start, in order: settle the cluster id (from the data
directory, from a member with --join, or from --cluster; raftkv.node.cluster_id), open the
storage (recovering a torn WAL tail; raftkv.storage), and build the peer transport with
the members the data directory knows.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from typing import Any

import attrs
import trio

from raftkv.backoff import Backoff
from raftkv.kv import KVDecodeError, KVStateMachine, decode_snapshot_stream
from raftkv.log import event
from raftkv.node.cluster_id import resolve_cluster_id
from raftkv.node.peer_auth import load_secret
from raftkv.node.settings import NodeSettings
from raftkv.node.sizes import transport_limits
from raftkv.node.tls import peer_tls
from raftkv.node.transport import PeerTransport
from raftkv.probe import describe_members, info_raft
from raftkv.raft import RaftCore
from raftkv.raft.validation import checker
from raftkv.storage import CorruptionError, DiskStorage, open_storage
from raftkv.storage.snapshot_file import snapshot_name
from wire.addr import parse_addr
from wire.raft import PEER_MESSAGE_TYPES, ClusterConfig, Member

log = logging.getLogger("raftkv.node")


async def open_data(settings: NodeSettings, rng: random.Random
                    ) -> tuple[NodeSettings, DiskStorage]:
    """The settings with the cluster's id, and the storage, open."""
    s = settings
    bootstrap = ClusterConfig(  # empty with --join: learnt from the leader
        tuple(Member(i, addr) for i, addr in sorted(s.cluster.items()) if not s.join)
    )
    cluster_id, source = await resolve_cluster_id(
        s.data_dir, s.cluster_id, s.join, s.cluster,
        lambda addr: info_raft(addr, 2.0), Backoff(0.2, 2.0, rng), node_id=s.node_id)
    event(log, logging.INFO, "cluster id", cluster_id=cluster_id, source=source)
    # From here on settings.cluster_id is the cluster's id, whatever decided it.
    s = attrs.evolve(s, cluster_id=cluster_id)
    storage = await trio.to_thread.run_sync(
        lambda: open_storage(s.data_dir, cluster_id, s.node_id, bootstrap, fsync=s.fsync)
    )
    for note in storage.recovery_notes:  # e.g. a torn WAL tail truncated
        event(log, logging.WARNING, "storage recovered", note=note)
    if s.fsync != "always":
        log.warning("fsync=%s: acknowledged writes can be lost on a crash (benchmarks only)",
                    s.fsync)
    return s, storage


def load_snapshot_state(storage: DiskStorage, kv: KVStateMachine) -> None:
    """Restore ``kv`` from the storage's snapshot, if it has one past index 0.

    The file's checksum proved it intact, not its state readable (a newer release's
    format, a tool's bug, a hand-edited file: attack5): a state that does not decode is a
    ``CorruptionError`` naming the snapshot file, which ``raftkv serve`` prints as its one
    refusal line, not a traceback out of the node's nursery."""
    meta = storage.snapshot_meta()
    if meta.index == 0:
        return
    try:
        kv.replace(storage.decode_snapshot(decode_snapshot_stream))
    except KVDecodeError as exc:
        path = os.path.join(storage.data_dir, snapshot_name(meta.index, meta.term))
        raise CorruptionError(path, 0, f"its state does not decode ({exc})") from None


def known_members(settings: NodeSettings, storage: DiskStorage, core: RaftCore
                  ) -> tuple[dict[int, str], bool]:
    """The members' peer addresses from the data directory (logging where that differs
    from the flags), and whether the node is joining (--join with no configuration yet)."""
    s = settings
    members = {m.id: m.peer_addr for m in core.known_members.values()}
    joining = bool(s.join) and not members
    if s.join and members:
        event(log, logging.WARNING, "the data directory has cluster state: ignoring "
              "--join", members=describe_members(core.cluster_config))
    elif not s.join and not getattr(storage, "created", True) and members != s.cluster:
        log.warning("existing data directory: using its membership, not --cluster",
                    extra={"fields": {"members": members}})
    return members, joining


def build_transport(settings: NodeSettings, members: dict[int, str],
                    inbound: Callable[[Any], None], rng: random.Random,
                    current_term: Callable[[], int], *,
                    on_activity: Callable[[int], None] | None = None,
                    on_peer_gone: Callable[[int], None] | None = None) -> PeerTransport:
    """The peer transport; ``current_term`` (the core's) bounds how far ahead a peer
    message's term may be (raftkv.raft.validation.check_term_ahead); ``on_activity`` and
    ``on_peer_gone`` feed the core's leader_activity and leader_unreachable."""
    s = settings
    return PeerTransport(
        node_id=s.node_id,
        cluster_id=s.cluster_id,
        listen=parse_addr(s.peer_addr, listen=True),
        advertise_peer_addr=s.peer_advertised,
        client_addr=s.client_advertised,
        peers={i: a for i, a in members.items() if i != s.node_id},
        inbound=inbound,
        rng=rng,
        limits=transport_limits(s),
        message_types=PEER_MESSAGE_TYPES,
        validate=checker(current_term),
        secret=load_secret(s.peer_secret_file) if s.peer_secret_file else None,
        tls=peer_tls(s.peer_tls_cert, s.peer_tls_key, s.peer_tls_ca)
        if s.peer_tls_cert else None,
        on_activity=on_activity,
        on_peer_gone=on_peer_gone,
    )
