"""The member nemesis: what replace and grow do to the membership and how they heal (on a
fake control), where it is refused, and a real run with it whose checks all hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.nemesis import MEMBER_KINDS, Fault, Nemesis, Unsupported, plan
from chaos.run import NoNet

CHAOS = str(Path(sys.executable).parent / "raftkv-chaos")


class FakeMembers:
    """A MemberControl that only keeps the books: who is a member, who is a voter."""

    def __init__(self, leader: int = 1) -> None:
        self.node_ids = [1, 2, 3]
        self.current_leader: int | None = leader
        self.next_id = 4
        self.log: list[tuple[str, int]] = []
        self.voters_checked: list[list[int]] = []

    async def kill(self, node: int) -> None: ...
    async def start(self, node: int) -> None: ...
    async def pause(self, node: int) -> None: ...
    async def resume(self, node: int) -> None: ...

    async def leader(self) -> int | None:
        return self.current_leader

    async def remove_member(self, node: int) -> None:
        assert node in self.node_ids
        self.node_ids.remove(node)
        if node == self.current_leader:
            self.current_leader = self.node_ids[0]
        self.log.append(("remove", node))

    async def add_member(self, replacing: int | None = None) -> int:
        assert replacing is None or replacing not in self.node_ids
        new, self.next_id = self.next_id, self.next_id + 1
        self.node_ids.append(new)
        self.log.append(("add", new))
        return new

    async def wait_all_voters(self) -> None:
        self.voters_checked.append(list(self.node_ids))


@pytest.mark.parametrize("seed", range(6))
async def test_replace_takes_a_node_out_and_a_new_id_in(seed: int) -> None:
    control = FakeMembers()
    nemesis = Nemesis(control, NoNet())
    desc, (gone, new) = await nemesis.inject(Fault("replace", 1.0, 3.0, seed))
    assert control.log == [("remove", gone), ("add", new)]
    assert new == 4 and gone in (1, 2, 3) and f"back empty as n{new}" in desc
    assert nemesis.nodes == [*sorted({1, 2, 3} - {gone}), 4]
    await nemesis.heal()
    assert control.voters_checked == [nemesis.nodes]  # healed: every member a voter
    await nemesis.heal()
    assert len(control.voters_checked) == 1  # nothing left to heal


async def test_replace_hits_the_leader_for_some_seeds() -> None:
    hit = set()
    for seed in range(20):
        control = FakeMembers(leader=2)
        desc, (gone, _) = await Nemesis(control, NoNet()).inject(Fault("replace", 1, 3, seed))
        hit.add(gone == 2 and "(was leader)" in desc)
    assert hit == {True, False}


async def test_grow_adds_two_and_heal_shrinks_back_to_three() -> None:
    control = FakeMembers()
    nemesis = Nemesis(control, NoNet())
    desc, added = await nemesis.inject(Fault("grow", 1.0, 3.0, 5))
    assert added == (4, 5) and len(control.node_ids) == 5 and "to 5 nodes" in desc
    await nemesis.heal()
    assert len(control.node_ids) == 3
    assert [op for op, _ in control.log] == ["add", "add", "remove", "remove"]
    assert control.voters_checked[0] == [1, 2, 3, 4, 5]  # all five voters before shrinking
    assert control.voters_checked[-1] == control.node_ids
    assert nemesis.heal_note.startswith("; shrank by {")


async def test_member_faults_need_a_member_control() -> None:
    class Plain:
        node_ids = [1, 2, 3]

        async def leader(self) -> int:
            return 1

    with pytest.raises(Unsupported):
        await Nemesis(Plain(), NoNet()).inject(Fault("grow", 1.0, 3.0, 0))  # type: ignore[arg-type]


def test_plans_have_member_faults_only_where_the_backend_supports_them() -> None:
    names = ("kill", "member")
    kinds = {f.kind for f in plan(1, names, 60, 3, NoNet.kinds)}
    assert set(MEMBER_KINDS) <= kinds
    assert {f.kind for f in plan(1, names, 60, 3)} == {"kill"}  # proxy/nft: no kinds attr


def test_the_cli_refuses_member_with_per_node_peer_addresses() -> None:
    for net in ("proxy", "nft"):
        res = subprocess.run([CHAOS, "run", "--nemesis", "kill,member", "--net", net],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2
        assert f"the member nemesis needs --net none, not --net {net}" in res.stderr


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_run_with_member_and_kill_holds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = subprocess.run([CHAOS, "run", "--duration", "35", "--nemesis", "member,kill",
                          "--net", "none", "--seed", "3", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=140)
    assert res.returncode == 0, res.stdout + res.stderr
    s = json.loads((out / "summary.json").read_text())
    assert all(c["ok"] for c in s["checks"]), s["checks"]
    assert s["linearizability"]["verdict"] == "ok"
    assert s["durability"]["lost"] == [] and len(s["durability"]["final"]) == 8
    kinds = {f["kind"] for f in s["faults"]}
    assert {"replace", "grow", "kill"} <= kinds, s["faults"]
    logs = {p.name for p in (out / "nodes").glob("node-*.log")}
    assert {"node-4.log", "node-5.log", "node-6.log"} <= logs  # new ids really joined
    for f in s["faults"]:
        if f["kind"] == "replace":  # "nX removed, wiped, back empty as nY": X's data is gone
            gone = f["description"].split()[0][1:]
            assert not (out / "nodes" / f"node-{gone}").exists()
        if f["kind"] == "grow":
            assert "shrank by {" in f["description"]
    assert res.stdout.splitlines()[-1].startswith("PASS:")
