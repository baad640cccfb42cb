"""Which cluster a node belongs to, decided once, before its data directory is opened.

The cluster id is in every peer Hello (and in every peer-authentication proof), so a node
of another cluster that dials us by mistake is refused. Where it comes from, first match:

1. ``--cluster-id``: an explicit override (1-64 of ``[A-Za-z0-9._-]``). On a data
   directory of another cluster the storage refuses to start, naming both ids. With
   ``--join`` on an empty directory the members are still asked, as in step 3, for the
   voter check alone (attack9: with the id given, that check was skipped, and attack7's
   wiped voter, restarted with ``--join`` and ``--cluster-id``, lost v1 on every node).
2. The data directory (``meta.json``): once a node has state, its cluster id never
   changes, so a restarted node needs no flag.
3. ``--join`` on an empty directory: learnt from the members' ``INFO raft`` (field
   ``cluster_id``), the same place the joining node already learns the members' peer
   addresses from. The answer is not trusted for anything but the id: a wrong one only
   makes the members refuse this node, and with a peer secret or TLS the node must still
   authenticate. If that member lists this node's id as a *voter*, the node refuses to
   start (``LostItsData``): a voter comes back empty only when it lost its data, and
   with its id it would vote again with an empty log and term (attack7: a wiped voter
   restarted with ``--join`` gave a stale follower the vote that made it leader, and an
   acknowledged ``SET`` was gone from every node).
4. Bootstrap with ``--cluster`` on an empty directory: derived from the initial member
   list (sha256 of the sorted ``id=peer_addr`` pairs), like etcd derives its cluster id
   from ``--initial-cluster``: the founding members start independently and must agree
   without talking. Two clusters bootstrapped on the very same addresses get the same id;
   give them a ``--cluster-id`` (``raftkv up`` makes a random one per data directory and
   keeps it in ``DATA_DIR/cluster-id``). An empty founder cannot tell from its flags
   whether it is new or lost its data, so before it votes it asks its founder peers
   whether the log has it as published (it served); if one says so it refuses to start
   with the same ``LostItsData`` line as step 3 (raftkv.node.publish; attack7's loss,
   with the wiped voter restarted from its ``--cluster`` line).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import trio

from raftkv.backoff import Backoff
from raftkv.log import event
from raftkv.probe import parse_members
from raftkv.storage.meta import read_meta

log = logging.getLogger("raftkv.node")

LEARN_TIMEOUT = 60.0  # seconds a --join node waits for a member to name the cluster id
_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")
CLUSTER_ID_RULE = "a cluster id is 1 to 64 of A-Z a-z 0-9 . _ -"  # _VALID, for messages


def valid_cluster_id(text: str) -> bool:
    return bool(_VALID.fullmatch(text))


def new_cluster_id() -> str:
    """A random cluster id (``raftkv up``, tests)."""
    return secrets.token_hex(8)


def derived_cluster_id(members: Mapping[int, str]) -> str:
    """The id every founding member computes alike from the initial member list."""
    text = ",".join(f"{i}={members[i]}" for i in sorted(members))
    return hashlib.sha256(b"raftkv cluster id v1\x00" + text.encode()).hexdigest()[:16]


def ensure_cluster_id_file(path: Path, data_dir_of_node: Path) -> str:
    """``raftkv up``'s cluster id: kept in ``path``, made at the first run (random), or
    adopted from an existing node directory made before the file existed."""
    try:
        text = _read_cluster_id_file(path)
    except FileNotFoundError:
        text = stored_cluster_id(str(data_dir_of_node)) or new_cluster_id()
        path.write_text(text + "\n")
    if not valid_cluster_id(text):
        raise ValueError(f"{path} does not hold a valid cluster id: {text[:80]!r}")
    return text


MAX_CLUSTER_ID_FILE = 4096  # an id is at most 64 characters


def _read_cluster_id_file(path: Path) -> str:
    """The stripped text of ``path``; ``FileNotFoundError`` if it is missing, otherwise
    a ``ValueError`` naming it for anything that is not a small regular text file (a
    directory was a traceback, a FIFO blocked, bytes that are not text an error that did
    not say which file: attack5)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # (fdopen refuses a directory itself)
        os.close(fd)
        raise ValueError(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CLUSTER_ID_FILE + 1)
    if len(data) > MAX_CLUSTER_ID_FILE:
        raise ValueError(f"{path} is larger than {MAX_CLUSTER_ID_FILE} bytes; it holds one "
                         "cluster id")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} does not hold a valid cluster id (not text)") from None


def stored_cluster_id(data_dir: str) -> str | None:
    """The cluster id in ``data_dir``'s meta.json, or None for a fresh directory."""
    if not os.path.isdir(data_dir):
        return None
    meta = read_meta(data_dir)
    return None if meta is None else meta.cluster_id


class ClusterIdUnknown(ConnectionError):
    """No --join member named the cluster id in time (an OSError: serve exits cleanly)."""


class LostItsData(ConnectionError):
    """A --join node with an empty data directory whose id the cluster lists as a voter
    (an OSError: serve exits with this one line)."""


def check_not_a_voter(info: Mapping[str, str], node_id: int, addr: str) -> None:
    """Raise LostItsData if ``info`` (a member's INFO raft) lists ``node_id`` as a voter."""
    member = parse_members(info.get("members", "")).get(node_id)
    if node_id and member is not None and member[1] == "voter":
        raise LostItsData(lost_its_data_text(node_id, f"as {addr} says: {node_id}={member[0]}"))


def lost_its_data_text(node_id: int, evidence: str) -> str:
    """The one line a voter that came back empty under its id exits with (--join here,
    --cluster in raftkv.node.publish)."""
    return (f"node {node_id} is already a voter of this cluster ({evidence}), but its data "
            f"directory is empty: a voter that lost its data must not come back under its "
            f"id (it would vote again with an empty log, and acknowledged writes could be "
            f"lost). Remove it (raftkv member remove {node_id}, i.e. RAFT REMOVENODE "
            f"{node_id}) and start it with a new --id and --join (README: Replacing a dead "
            f"node)")


async def learn_cluster_id(
    seeds: Sequence[str],
    fetch: Callable[[str], dict[str, str]],
    backoff: Backoff,
    give_up_after: float = LEARN_TIMEOUT,
    node_id: int = 0,
    given: bool = False,
) -> str:
    """Ask the members at ``seeds`` (client addresses) until one names a valid cluster id;
    ``fetch`` is a blocking INFO raft (run in a thread). Bounded: the node is not serving
    yet (it cannot open its data directory without the id, and does not handle signals
    before it serves), so after ``give_up_after`` seconds it exits with a clear error
    rather than wait unseen. ``given``: the id was given (--cluster-id); asked only for
    the voter check, and the error says so."""
    with trio.move_on_after(give_up_after):
        return await _ask_until_answered(seeds, fetch, backoff, node_id)
    if given:
        raise ClusterIdUnknown(
            f"no --join member ({', '.join(seeds)}) answered within {give_up_after:g} s; "
            f"are they running? (a --join node on an empty data directory asks them whether "
            f"node {node_id} is already a voter before it starts, --cluster-id or not)")
    raise ClusterIdUnknown(
        f"no --join member ({', '.join(seeds)}) named the cluster id within {give_up_after:g} s; "
        f"are they running? (or give --cluster-id)")


async def _ask_until_answered(
    seeds: Sequence[str], fetch: Callable[[str], dict[str, str]], backoff: Backoff,
    node_id: int = 0,
) -> str:
    while True:
        for addr in seeds:
            try:
                info = await trio.to_thread.run_sync(fetch, addr)
            except (OSError, ConnectionError, ValueError) as exc:
                event(log, logging.INFO, "join: member unreachable", endpoint=addr, error=exc)
                continue
            found = info.get("cluster_id", "")
            check_not_a_voter(info, node_id, addr)
            if valid_cluster_id(found):
                return found
            event(log, logging.WARNING, "join: member gave no valid cluster id",
                  endpoint=addr, cluster_id=found[:80])
        backoff.failed()
        await trio.sleep(backoff.delay())


async def resolve_cluster_id(
    data_dir: str,
    explicit: str,
    join: Sequence[str],
    members: Mapping[int, str],
    fetch: Callable[[str], dict[str, str]],
    backoff: Backoff,
    node_id: int = 0,
) -> tuple[str, str]:
    """(cluster id, where it came from): see the module docstring for the order.
    ``node_id``: this node's, checked against the members a --join node asks (0: not)."""
    if explicit and not join:
        return explicit, "--cluster-id"
    stored = await trio.to_thread.run_sync(stored_cluster_id, data_dir)
    if explicit:
        if stored is None:  # an empty --join node: the voter check (docstring, step 1)
            learnt = await learn_cluster_id(join, fetch, backoff, node_id=node_id, given=True)
            if learnt != explicit:
                event(log, logging.WARNING, "join: the members name another cluster id than "
                      "--cluster-id (they will refuse this node)", given=explicit,
                      theirs=learnt)
        return explicit, "--cluster-id"
    if stored is not None:
        return stored, "data directory"
    if join:
        return (await learn_cluster_id(join, fetch, backoff, node_id=node_id),
                "learnt from the cluster")
    return derived_cluster_id(members), "derived from --cluster"
