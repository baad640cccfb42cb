"""attack17: the leader records a level a re-added member never reported.

``LevelLearner`` forgets what it learned of a member only on a new term or when that
member's link stats ``(reconnects, connected)`` change. A member removed (``RAFT
REMOVENODE``) and added again under its id (a replaced machine, a new address, another
release) gets a brand-new link: ``reconnects`` counts from 0 again, so once it is
connected its stats read ``(0, True)``, exactly as the old link's did. The learner keeps
the old incarnation's answer, never asks the new node, and, since the removal made the
state machine forget the id's recorded level, proposes ``member_level <id> <old level>``:
the gate opens for a node that reads only level-0 forms (and every ``budget`` entry after
it is skipped there: its replica diverges). The same holds for any later level: a
level-2 cluster re-adding a level-1 node would record 2.

Live, in one process on real sockets (three ``Node``s at level 1; a follower removed with
``membership.remove``, its task stopped, a new ``Node(level=0)`` under the same id started
with ``join`` at a new address): 3 runs of 3, 4 s after the re-add, the leader had learned
and recorded the new node at level 1 and ``gate_level()`` was 1."""

from __future__ import annotations

from types import SimpleNamespace

from raftkv.testing import LeaderLevels, link


async def test_a_member_removed_and_added_again_is_asked_again() -> None:
    leader = LeaderLevels({2: 1, 3: 1})
    kv = leader.kv
    await leader.steps(4)
    assert kv.member_levels == {1: 1, 2: 1, 3: 1} and kv.cluster_level == 1

    # RAFT REMOVENODE 3: applied on every replica (the level of 3 is forgotten), the link
    # closed; the learner looks while 3 is out.
    leader.config.members = [m for m in leader.config.members if m.id != 3]
    leader.applied[:] = [1, 2]
    kv.keep_members(leader.applied)
    del leader.links[3]
    await leader.steps(1)
    # RAFT ADDNODE 3 <new address>: another process (standing in for an earlier release)
    # under the same id; its new link connects, its stats as the old link's were.
    leader.config.members = [*leader.config.members, SimpleNamespace(id=3)]
    leader.applied[:] = [1, 2, 3]
    kv.keep_members(leader.applied)
    leader.links[3] = link(generation=3)
    leader.levels[3] = 0
    await leader.steps(4)
    assert kv.member_levels.get(3, 0) == 0, (
        f"recorded level {kv.member_levels.get(3)} for the re-added member 3, which was "
        f"never asked (asked: {leader.asked})")
    assert kv.cluster_level == 0


async def test_a_member_removed_and_added_again_between_two_looks_is_asked_again() -> None:
    """The removal and the re-add both land between two of the leader's looks: only the
    new link's generation tells it from the old one (its counters read as the old ones)."""
    leader = LeaderLevels({2: 1, 3: 1})
    kv = leader.kv
    await leader.steps(4)
    assert kv.member_levels == {1: 1, 2: 1, 3: 1}
    kv.keep_members([1, 2])  # removed and added again, the learner not looking
    kv.keep_members([1, 2, 3])
    leader.links[3] = link(generation=3)
    leader.levels[3] = 0
    await leader.steps(4)
    assert leader.asked[-1] == [3] and kv.member_levels.get(3, 0) == 0
    assert kv.cluster_level == 0


def test_a_peer_removed_and_added_again_gets_a_new_link_generation() -> None:
    """What the learner relies on: the transport's stats tell the new link from the old."""
    from raftkv.node.transport import PeerTransport

    transport = PeerTransport(node_id=1, cluster_id="c", listen=("127.0.0.1", 0),
                              advertise_peer_addr="127.0.0.1:1", client_addr="127.0.0.1:2",
                              peers={2: "127.0.0.1:3", 3: "127.0.0.1:4"},
                              inbound=lambda msg: None)
    before = {p: s.generation for p, s in transport.stats().items()}
    assert len(set(before.values())) == 2
    transport.update_peers({2: "127.0.0.1:3"})
    transport.update_peers({2: "127.0.0.1:3", 3: "127.0.0.1:4"})
    after = {p: s.generation for p, s in transport.stats().items()}
    assert after[2] == before[2] and after[3] not in before.values()
