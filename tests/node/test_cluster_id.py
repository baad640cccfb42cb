"""Where a node's cluster id comes from (raftkv.node.cluster_id), without processes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from raftkv.backoff import Backoff
from raftkv.node.cluster_id import (
    ClusterIdUnknown,
    derived_cluster_id,
    ensure_cluster_id_file,
    learn_cluster_id,
    new_cluster_id,
    resolve_cluster_id,
    valid_cluster_id,
)
from raftkv.storage import open_storage
from wire.raft import ClusterConfig, Member

MEMBERS = {1: "127.0.0.1:7101", 2: "127.0.0.1:7102", 3: "127.0.0.1:7103"}


def no_fetch(addr: str) -> dict[str, str]:
    raise AssertionError("must not ask the cluster")


def backoff() -> Backoff:
    return Backoff(0.001, 0.002, random.Random(1))


def test_derived_ids_agree_and_tell_clusters_apart() -> None:
    same_order_free = dict(reversed(list(MEMBERS.items())))
    assert derived_cluster_id(MEMBERS) == derived_cluster_id(same_order_free)
    assert derived_cluster_id(MEMBERS) != derived_cluster_id({**MEMBERS, 3: "127.0.0.1:7203"})
    assert valid_cluster_id(derived_cluster_id(MEMBERS))
    assert new_cluster_id() != new_cluster_id() and valid_cluster_id(new_cluster_id())
    for bad in ("", "a" * 65, "has space", "x\n", "é"):
        assert not valid_cluster_id(bad)


async def test_order_flag_then_data_dir_then_join_then_derived(tmp_path: Path) -> None:
    fresh = str(tmp_path / "fresh")
    assert await resolve_cluster_id(fresh, "", (), MEMBERS, no_fetch, backoff()) == (
        derived_cluster_id(MEMBERS), "derived from --cluster")
    assert (await resolve_cluster_id(fresh, "mine", (), MEMBERS, no_fetch, backoff()))[0] == "mine"
    used = tmp_path / "used"
    config = ClusterConfig((Member(1, MEMBERS[1]),))
    open_storage(used, "kept-id", 1, config, fsync="never").close()
    got = await resolve_cluster_id(str(used), "", ("a:1",), MEMBERS, no_fetch, backoff())
    assert got == ("kept-id", "data directory")
    # An explicit id is used as given (the storage then refuses a mismatch: below).
    got = await resolve_cluster_id(str(used), "other", (), MEMBERS, no_fetch, backoff())
    assert got == ("other", "--cluster-id")


def test_raftkv_up_keeps_one_random_id_and_adopts_an_old_one(tmp_path: Path) -> None:
    first = ensure_cluster_id_file(tmp_path / "cluster-id", tmp_path / "node-1")
    assert valid_cluster_id(first)
    assert ensure_cluster_id_file(tmp_path / "cluster-id", tmp_path / "node-1") == first
    old = tmp_path / "old"
    old.mkdir()
    open_storage(old / "node-1", "raftkv", 1, ClusterConfig((Member(1, MEMBERS[1]),)),
                 fsync="never").close()
    assert ensure_cluster_id_file(old / "cluster-id", old / "node-1") == "raftkv"


async def test_a_joining_node_learns_the_id_skipping_bad_answers(tmp_path: Path) -> None:
    asked: list[str] = []
    answers = iter([OSError("down"), {"cluster_id": "bad id!"}, {}, {"cluster_id": "abc123"}])

    def fetch(addr: str) -> dict[str, str]:
        asked.append(addr)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with trio.fail_after(5):
        got = await resolve_cluster_id(str(tmp_path / "new"), "", ("a:1", "b:2"), {}, fetch,
                                       backoff())
    assert got == ("abc123", "learnt from the cluster")
    assert asked == ["a:1", "b:2", "a:1", "b:2"]


def test_storage_refuses_another_cluster_id(tmp_path: Path) -> None:
    config = ClusterConfig((Member(1, MEMBERS[1]),))
    open_storage(tmp_path, "one", 1, config, fsync="never").close()
    with pytest.raises(Exception, match="belongs to cluster 'one'"):
        open_storage(tmp_path, "two", 1, config, fsync="never")


async def test_learning_gives_up_with_a_clear_error_when_no_member_answers() -> None:
    def down(addr: str) -> dict[str, str]:
        raise OSError("connection refused")

    with trio.fail_after(5), pytest.raises(ClusterIdUnknown, match="--cluster-id"):
        await learn_cluster_id(("a:1",), down, backoff(), give_up_after=0.05)


async def test_a_join_node_whose_id_is_already_a_voter_refuses_to_start(tmp_path: Path) -> None:
    """attack7: a voter whose data directory was lost and that came back with --join and
    its old id voted again with an empty log: it made a stale follower leader, and an
    acknowledged SET was gone from every node. An empty --join node whose id a member
    lists as a voter now refuses to start; as a learner (a join that crashed before it
    stored anything) or a new id, it joins as before."""
    import raftkv.node.cluster_id as cluster_id

    members = "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103,4=127.0.0.1:7104(learner)"

    def fetch(addr: str) -> dict[str, str]:
        return {"cluster_id": "abc123", "members": members}

    fresh = str(tmp_path / "new")
    with trio.fail_after(5):
        with pytest.raises(cluster_id.LostItsData, match="node 3 is already a voter"):
            await resolve_cluster_id(fresh, "", ("a:1",), {}, fetch, backoff(), node_id=3)
        for joining in (4, 5):
            got = await resolve_cluster_id(fresh, "", ("a:1",), {}, fetch, backoff(),
                                           node_id=joining)
            assert got == ("abc123", "learnt from the cluster")


async def test_a_join_node_given_its_cluster_id_is_still_checked(tmp_path: Path) -> None:
    """attack9, live: attack7's wiped voter restarted with --join *and* --cluster-id (the
    README's advice for clusters on the same addresses) skipped the members' answer, so
    the voter check with it: it voted for the stale node and v1 was gone from every node.
    With the id given the members are still asked (for the check alone); a node with data
    is not asked, nor one without --join."""
    import raftkv.node.cluster_id as cluster_id

    members = "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103"
    asked: list[str] = []

    def fetch(addr: str) -> dict[str, str]:
        asked.append(addr)
        return {"cluster_id": "abc123", "members": members}

    fresh = str(tmp_path / "new")
    with trio.fail_after(5):
        with pytest.raises(cluster_id.LostItsData, match="node 3 is already a voter"):
            await resolve_cluster_id(fresh, "abc123", ("a:1",), {}, fetch, backoff(),
                                     node_id=3)
        got = await resolve_cluster_id(fresh, "abc123", ("a:1",), {}, fetch, backoff(),
                                       node_id=4)
        assert got == ("abc123", "--cluster-id") and asked == ["a:1", "a:1"]
    used = tmp_path / "used"
    open_storage(used, "abc123", 3, ClusterConfig((Member(1, MEMBERS[1]),)),
                 fsync="never").close()
    assert await resolve_cluster_id(str(used), "abc123", ("a:1",), {}, no_fetch, backoff(),
                                    node_id=3) == ("abc123", "--cluster-id")


async def test_a_given_id_join_node_gives_up_naming_the_check() -> None:
    def down(addr: str) -> dict[str, str]:
        raise OSError("connection refused")

    with trio.fail_after(5), pytest.raises(ClusterIdUnknown, match="already a voter"):
        await learn_cluster_id(("a:1",), down, backoff(), give_up_after=0.05, node_id=3,
                               given=True)
