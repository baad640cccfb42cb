"""Published members: a voter that served is recorded in the log, and a founder that comes
back empty under a published id refuses to start (etcd's ``isMemberBootstrapped``, made
stricter).

Why: a founder bootstrapped with ``--cluster`` on an empty data directory cannot tell "I
am a founder that starts late" from "I lost my data". If it lost its data it must not vote:
with an empty log and term it gives its vote to any stale node (attack7: ``SET k v1``
acknowledged by A and B, B wiped and restarted with its ``--cluster`` line, A dead: B
elected the stale C and v1 was gone from every node).

- **Publishing** (the leader, ``publish_members``): once a voter has acknowledged an entry
  of the leader's term (its match index > 0; the leader itself at once), the leader
  proposes ``publish_member id``, one at a time. The state machine keeps the set (in
  snapshots); an applied configuration that no longer lists an id forgets it, so an id
  removed and added again starts unpublished.
- **Probing** (``wait_until_unpublished``): a founder that starts on an empty directory,
  with other founders, neither votes nor campaigns (the driver and ticker hold the core)
  until a founder peer answers ``RAFT PUBLISHED id``, sent as a ``ForwardRequest`` over
  the authenticated peer port and answered at once by any node (``answer_probe``) from its
  applied state and the entries its log holds past it: a node that just restarted answers
  before it has re-applied its log, and from its applied state alone it said "not
  published" of a founder its log records (a CI run lost v1 that way). Published: the
  node exits with one line (``LostItsData``). Not
  published (a fresh cluster, a late founder that never served), answered by enough
  founders that they and the node itself are a majority of the founders: it goes on.
  Fewer (no answer, or too few): it asks again, with back-off and no deadline, so a late
  founder comes up whenever a peer does; unlike etcd it never goes on because the peers
  are unreachable.

  Why a majority (attack9): a founder that is itself still asking answers "not published"
  from its empty state (it must: in a new cluster every founder asks). Taking one answer,
  two wiped founders of five, restarted while the other three were down, each heard "not
  published" from the other, went on, and with a stale founder elected a leader without
  the acknowledged write. The wiped founders are a minority (the loss Raft survives), so
  alone they cannot make a majority of answers: at least one founder that kept its data
  must say "not published".

  Why a ``ForwardRequest`` and not a new record: the peer codec is strict (fixed arity,
  known tags), so a node of an older release would drop the connection on an unknown
  record and never answer; as a forwarded ``RAFT`` command it answers its usage error,
  which is recognisable, and is taken as "not published" (an older release cannot have
  applied a ``publish_member`` entry), with a WARNING.

Left open (as in etcd): a founder wiped before the entry publishing it committed on any
node that answers is not caught; the entry follows the voter's first acknowledgement by
one commit round.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import trio

from raftkv.backoff import Backoff
from raftkv.kv import KVStateMachine
from raftkv.kv.codec import decode_command
from raftkv.kv.commands import member_id
from raftkv.kv.errors import KVDecodeError
from raftkv.log import event
from raftkv.node.cluster_id import LostItsData, lost_its_data_text
from raftkv.node.pending import Pending
from raftkv.node.requests import RequestTracker
from raftkv.node.transport import PeerTransport
from raftkv.raft import RaftCore, Role
from wire.raft import NORMAL, Entry, ForwardRequest
from wire.reply import ErrorReply

log = logging.getLogger("raftkv.node")

PERIOD = 0.1  # seconds between the leader's looks for voters to publish
ROUND_TIMEOUT = 2.0  # seconds one probe round waits for the founders' answers
PROBE = (b"RAFT", b"PUBLISHED")
MARK = b"publish_member"  # the entry's command name, as the leader proposes it
# How a node of an earlier release answers a forwarded RAFT command it does not know
# (raftkv.server.admin's usage line), and, on the client port, its unknown subcommand.
OLD_RELEASE = ("ERR wrong arguments", "ERR unknown RAFT subcommand")

PUBLISHED, NOT_PUBLISHED, NO_ANSWER, OLDER = "published", "not published", "no answer", "older"


# -- the leader ------------------------------------------------------------------------------


def to_publish(node_id: int, core: RaftCore, kv: KVStateMachine) -> int:
    """The first voter the leader ``node_id`` should publish now, or 0
    (``KVStateMachine.next_to_publish``)."""
    def match(peer: int) -> int:
        progress = core.progress(peer)
        return progress.match if progress is not None else 0

    return kv.next_to_publish(node_id, (m.id for m in core.cluster_config.members
                                        if not m.learner), match)


async def publish_members(node_id: int, core: RaftCore, kv: KVStateMachine,
                          submit: Callable[[list[bytes]], Pending]) -> None:
    """Run for the node's lifetime: while it leads, publish the voters that served, one
    entry in flight at a time (answered when applied, or failed at the request timeout)."""
    while True:
        await trio.sleep(PERIOD)
        while core.role is Role.LEADER:
            member = to_publish(node_id, core, kv)
            if not member:
                break
            reply = await submit([MARK, b"%d" % member]).wait()
            if not isinstance(reply, int):
                break
            event(log, logging.INFO, "member published", id=member)


# -- answering a probe (any node) ------------------------------------------------------------


def answer_probe(kv: KVStateMachine, args: Sequence[bytes],
                 unapplied: Callable[[], list[Entry] | None]) -> Any:
    """The reply to a peer's ``RAFT PUBLISHED id``, or None if ``args`` is not one (it is
    then an ordinary forwarded command). 1 if this node's applied state or an entry of its
    log past it (``unapplied``: None while a snapshot is being installed) publishes the id,
    0 if neither does, TRYAGAIN (asked again) if the log cannot be read."""
    # (Asked of every forwarded command: a length test first, no copy for a SET's name.)
    if (len(args) < 2 or len(args[0]) != len(PROBE[0]) or args[0].upper() != PROBE[0]
            or args[1].upper() != PROBE[1]):
        return None
    node_id = member_id(args[2]) if len(args) == 3 else None
    if node_id is None:
        return ErrorReply("ERR RAFT PUBLISHED takes one node id")
    if kv.is_published(node_id):
        return 1
    entries = unapplied()
    if entries is None:
        return ErrorReply("TRYAGAIN this node is installing a snapshot; ask again")
    return int(any(publishes(entry, node_id) for entry in entries))


def publishes(entry: Entry, node_id: int) -> bool:
    """Whether the log entry ``entry`` is ``publish_member node_id``. Uncommitted counts: a
    leader proposes it only after the voter acknowledged an entry, so it served."""
    if entry.kind != NORMAL or MARK not in entry.data:  # most entries: one bytes search
        return False
    try:
        args = decode_command(entry.data)
    except KVDecodeError:
        return False
    return len(args) == 2 and args[0] == MARK and member_id(args[1]) == node_id


# -- probing (a founder starting empty) ------------------------------------------------------


def classify(reply: Any) -> str:
    """What one founder's reply to the probe says."""
    if type(reply) is int and reply in (0, 1):
        return PUBLISHED if reply else NOT_PUBLISHED
    if isinstance(reply, ErrorReply) and reply.text.startswith(OLD_RELEASE):
        return OLDER
    return NO_ANSWER  # not sent, timed out, or anything unexpected: ask again


def decide(answers: Iterable[str], needed: int = 1) -> str:
    """The round's outcome from its answers: PUBLISHED if any says so; NOT_PUBLISHED if
    at least ``needed`` founders answered (an older release counts as "not published");
    otherwise NO_ANSWER (ask again)."""
    seen = list(answers)
    if PUBLISHED in seen:
        return PUBLISHED
    if sum(a in (NOT_PUBLISHED, OLDER) for a in seen) >= needed:
        return NOT_PUBLISHED
    return NO_ANSWER


def answers_needed(founders: Iterable[int]) -> int:
    """How many founder peers must answer "not published": with the asking founder, a
    majority of the founders (3 founders: 1, 5: 2, 7: 3). See the module docstring."""
    return len(set(founders)) // 2


def must_probe(founders: Iterable[int], node_id: int, fresh: bool) -> bool:
    """A founder on a fresh (empty) data directory with other founders probes; a restarted
    node, a --join node and a single-node cluster do not."""
    return fresh and any(i != node_id for i in founders)


async def _ask(node_id: int, peers: Sequence[int], transport: PeerTransport,
               requests: RequestTracker, term: int) -> dict[int, Any]:
    """One round: the probe to every peer, their replies (None where none came). A probe
    the transport dropped unsent (the peer was not up yet, its dial failed) gets no reply:
    the round stops waiting for it then, not at ROUND_TIMEOUT, with the same replies. (A
    fresh cluster's founders start together, and the first to ask found the others not
    listening yet: it held its vote 2 s, and every cluster start took 2 s longer.)"""
    sent: dict[int, tuple[int, Pending, Callable[[], bool]]] = {}
    args = (*PROBE, b"%d" % node_id)
    deadline = trio.current_time() + ROUND_TIMEOUT
    for peer in peers:
        req_id = requests.next_id()
        pending = Pending()
        mark = transport.send_mark(peer)
        if transport.send(ForwardRequest(term=term, src=node_id, dst=peer, req_id=req_id,
                                         args=args)):
            requests.track_forward(req_id, pending, deadline, peer)
            dropped = functools.partial(transport.dropped_since, peer, mark)
            sent[peer] = (req_id, pending, dropped)
    replies: dict[int, Any] = dict.fromkeys(peers)
    with trio.move_on_at(deadline):
        for peer, (_, pending, dropped) in sent.items():
            await _answered_or_dropped(pending, dropped, transport)
            replies[peer] = pending.value
            if classify(replies[peer]) == PUBLISHED:
                break
    for peer, (req_id, pending, _) in sent.items():
        if pending.done:
            replies[peer] = pending.value  # (answered while we waited for another)
        else:
            requests.forward_answered(req_id)  # unanswered: forget it
    return replies


async def _answered_or_dropped(pending: Pending, dropped: Callable[[], bool],
                               transport: PeerTransport) -> None:
    """Until ``pending`` has the peer's reply, or ``dropped()`` says none can come."""
    if pending.done or dropped():
        return
    async with trio.open_nursery() as nursery:
        async def answered() -> None:
            await pending.wait()
            nursery.cancel_scope.cancel()

        async def gone() -> None:
            await transport.wait_until(dropped)
            nursery.cancel_scope.cancel()

        nursery.start_soon(answered)
        nursery.start_soon(gone)


async def wait_until_unpublished(node_id: int, founders: Sequence[int],
                                 transport: PeerTransport, requests: RequestTracker,
                                 term: Callable[[], int], rng: random.Random) -> None:
    """Return once a founder peer says ``node_id`` is not published; raise LostItsData if
    one says it is. No deadline: see the module docstring."""
    peers = sorted(i for i in founders if i != node_id)
    needed = answers_needed([*founders, node_id])
    backoff = Backoff(0.2, 2.0, rng)
    rounds = 0
    while True:
        replies = await _ask(node_id, peers, transport, requests, term())
        answers = {peer: classify(reply) for peer, reply in replies.items()}
        outcome = decide(answers.values(), needed)
        if outcome == PUBLISHED:
            peer = next(p for p, a in answers.items() if a == PUBLISHED)
            raise LostItsData(lost_its_data_text(
                node_id, f"node {peer} has it as published: it served"))
        for peer, answer in answers.items():
            if answer == OLDER:
                event(log, logging.WARNING, "founder check: a peer of an earlier release "
                      "cannot tell whether this node served; taken as not published",
                      peer=peer)
        if outcome == NOT_PUBLISHED:
            event(log, logging.INFO, "founder check: not published, joining the cluster",
                  answers=_describe(answers))
            return
        if rounds % 10 == 0:
            event(log, logging.INFO, "founder check: waiting for a founder to answer "
                  "before voting (an empty data directory may be a lost one)",
                  peers=",".join(map(str, peers)), needed=needed,
                  answers=_describe(answers), rounds=rounds)
        rounds += 1
        backoff.failed()
        await trio.sleep(backoff.delay())


def _describe(answers: dict[int, str]) -> str:
    return ",".join(f"{peer}={answer}" for peer, answer in sorted(answers.items()))
