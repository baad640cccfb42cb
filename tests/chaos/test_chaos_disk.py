"""The disk-full nemesis: its schedule and inject/heal (fakes), the tmpfs disks it fills,
and a real run where full disks stop nodes, cleanly, with nothing acknowledged lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.disks import SLACK, TmpfsDisks, stopped_cleanly
from chaos.nemesis import KINDS, Fault, Nemesis, Unsupported, parse_nemeses, plan

ROOT = os.geteuid() == 0


def test_disk_full_is_named_explicitly_not_part_of_all() -> None:
    assert parse_nemeses("disk-full,kill") == ("disk-full", "kill")
    assert "disk-full" not in parse_nemeses("all")


def test_plan_schedules_disk_full_only_where_disks_can_be_filled() -> None:
    faults = plan(5, ("disk-full",), 30, 3, {*KINDS, "disk-full"})
    assert faults and {f.kind for f in faults} == {"disk-full"}
    assert plan(5, ("disk-full",), 30, 3, KINDS) == []


class FakeDisks:
    def __init__(self, disks: dict[int, object], leader: int | None = 2) -> None:
        self.node_ids = [1, 2, 3]
        self.disks = disks
        self.current_leader = leader
        self.log: list[tuple[str, int]] = []

    async def kill(self, node: int) -> None:
        self.log.append(("kill", node))

    async def start(self, node: int) -> None:
        self.log.append(("start", node))

    async def pause(self, node: int) -> None: ...
    async def resume(self, node: int) -> None: ...

    async def leader(self) -> int | None:
        return self.current_leader

    async def fill_disk(self, node: int) -> str:
        self.log.append(("fill", node))
        return "full"

    async def free_disk(self, node: int) -> None:
        self.log.append(("free", node))


class NoNet:
    name = "none"

    async def cut(self, links: object) -> None: ...
    async def slow(self, links: object, delay: float, jitter: float) -> None: ...
    async def heal(self) -> None: ...
    async def close(self) -> None: ...


async def test_disk_full_fills_then_frees_and_restarts_the_node() -> None:
    control = FakeDisks({1: "d1", 2: "d2", 3: "d3"})
    nemesis = Nemesis(control, NoNet())
    seen = set()
    for seed in range(12):
        control.log.clear()
        desc, (node,) = await nemesis.inject(Fault("disk-full", 1.0, 2.0, seed))
        assert desc.startswith(f"n{node}'s disk full (full)")
        await nemesis.heal()
        assert control.log == [("fill", node), ("free", node), ("start", node)]
        seen.add(node)
    assert 2 in seen and len(seen) > 1  # the leader half the time, anyone otherwise


async def test_disk_full_without_disks_is_unsupported() -> None:
    nemesis = Nemesis(FakeDisks({}), NoNet())
    with pytest.raises(Unsupported, match="needs root"):
        await nemesis.inject(Fault("disk-full", 1.0, 2.0, 0))


def test_stopped_cleanly_reads_the_log_from_the_fault_on(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_text("Traceback (an older crash)\n")
    since = log.stat().st_size
    with open(log, "a") as f:
        f.write("12:00:00.000 WARNING raftkv.node snapshot not written\n"
                "raftkv serve: stopping: writing the WAL in /d failed (disk full): "
                "[Errno 28] No space left on device\n")
    assert stopped_cleanly(log, since)
    assert not stopped_cleanly(log, 0)  # a traceback in the window: not clean
    with open(log, "a") as f:
        f.write("Traceback (most recent call last):\n")
    assert not stopped_cleanly(log, since)


@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")
def test_tmpfs_disk_fills_to_the_slack_and_frees(tmp_path: Path) -> None:
    disks = TmpfsDisks(size="4m")
    disks.mount(1, tmp_path / "d")
    try:
        disks.fill(1)
        st = os.statvfs(tmp_path / "d")
        assert st.f_bavail * st.f_frsize <= SLACK
        with pytest.raises(OSError, match="No space left"), open(tmp_path / "d" / "x", "wb") as f:
            f.write(b"x" * (SLACK + 8192))
            f.flush()
        disks.free(1)
        assert os.statvfs(tmp_path / "d").f_bavail * st.f_frsize > 3 * 1024 * 1024
    finally:
        disks.unmount_all()


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")
def test_a_run_with_full_disks_passes_and_the_nodes_stop_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    chaos = str(Path(sys.executable).parent / "raftkv-chaos")
    res = subprocess.run([chaos, "run", "--duration", "22", "--nemesis", "disk-full",
                          "--net", "none", "--seed", "3", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=140)
    assert res.returncode == 0, res.stdout + res.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["linearizability"]["verdict"] == "ok"
    assert s["durability"]["lost"] == []
    assert {f["kind"] for f in s["faults"]} == {"disk-full"}
    logs = [p.read_text() for p in (out / "nodes").glob("node-*.log")]
    stops = [line for text in logs for line in text.splitlines()
             if line.startswith("raftkv serve: stopping: ")]
    assert stops, "no full disk stopped a node: the fault had no teeth"
    assert all("No space left on device" in line for line in stops)
    assert not any("Traceback" in text for text in logs)
    assert "chaos-n" not in Path("/proc/mounts").read_text()  # every tmpfs unmounted
