"""``raftkv-chaos run`` and ``partition`` end to end: real nodes, real faults, real checks.

The normal runs must pass with zero violations; the teeth run starts the nodes with the
test-only ``--unsafe-stale-reads`` and isolates a follower, so clients on it read stale
values: the checker must say so. Every run must leave no node process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.cluster import free_ports
from chaos.nemesis import PARTITIONS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]
CHAOS = str(Path(sys.executable).parent / "raftkv-chaos")


def chaos(*args: str, timeout: float = 140) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHAOS, *args, "--quiet"], capture_output=True, text=True,
                          timeout=timeout)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (e.g. a data directory)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd and int(pid) != os.getpid():
            found.append(cmd)
    return found


def summary(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "summary.json").read_text())


def test_short_run_with_kill_pause_partition_passes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = chaos("run", "--duration", "25", "--nemesis", "kill,pause,partition", "--seed", "11",
                "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    s = summary(out)
    assert s["linearizability"]["verdict"] == "ok"
    assert all(c["ok"] for c in s["checks"]), s["checks"]
    kinds = {f["kind"] for f in s["faults"]}
    assert {"kill", "pause"} <= kinds and kinds & set(PARTITIONS), kinds
    assert s["operations"]["by_outcome"]["ok"] > 500
    assert s["durability"]["lost"] == [] and len(s["durability"]["final"]) == 8
    assert res.stdout.splitlines()[-1].startswith("PASS:")
    for name in ("history.jsonl", "summary.txt", "nodes/node-1.log"):
        assert (out / name).exists()
    assert processes_mentioning(str(out)) == []


def test_teeth_stale_reads_on_an_isolated_follower_are_caught(tmp_path: Path) -> None:
    out = tmp_path / "teeth"
    res = chaos("run", "--duration", "15", "--nemesis", "isolate-follower", "--seed", "3",
                "--out", str(out), "--unsafe-stale-reads")
    assert res.returncode == 1, res.stdout + res.stderr
    s = summary(out)
    assert s["linearizability"]["verdict"] == "violation"
    bad = [k for k in s["linearizability"]["keys"] if k["verdict"] == "violation"]
    assert bad and all(k["explanation"]["stuck"] for k in bad)
    assert "UNSAFE STALE READS" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("FAIL: linearizability")
    assert processes_mentioning(str(out)) == []


def test_partition_scenario_reports_uptime_and_the_return(tmp_path: Path) -> None:
    out = tmp_path / "partition"
    res = chaos("partition", "--before", "2", "--delay", "5", "--after", "3", "--seed", "2",
                "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    text = (out / "partition.txt").read_text()
    assert "cut off from" in text and "uptime during the partition" in text
    assert "new leader serving writes after" in text and "served again" in text
    assert summary(out)["faults"][0]["kind"] == "isolate-leader"
    assert processes_mentioning(str(out)) == []


def test_nft_backend_in_a_private_namespace(tmp_path: Path) -> None:
    out = tmp_path / "nft"
    res = chaos("run", "--net", "nft", "--duration", "15", "--nemesis", "split,one-way",
                "--seed", "4", "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    s = summary(out)
    assert {f["kind"] for f in s["faults"]} == {"split", "one-way"}
    assert s["options"]["net"] == "nft"
    # Each node on its own loopback address, inside the namespace.
    assert "client=127.0.0.2:7001 peer=127.0.0.2:7101" in (out / "nodes" / "node-2.log"
                                                           ).read_text()
    assert processes_mentioning(str(out)) == []


def test_bad_arguments_fail_before_starting_anything(tmp_path: Path) -> None:
    res = chaos("run", "--nemesis", "kill,meteor", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "unknown nemesis 'meteor'" in res.stderr
    res = chaos("run", "--net", "docker", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "--endpoints" in res.stderr
    res = chaos("partition", "--endpoints", "127.0.0.1:7001", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "needs --net docker" in res.stderr
    assert not (tmp_path / "x").exists()


def test_partition_test_sh_explains_itself_and_fails_without_a_cluster() -> None:
    script = Path(__file__).resolve().parents[2] / "chaos" / "partition-test.sh"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "original RaftKV's partition test" in res.stdout and "--delay" in res.stdout
    res = subprocess.run([str(script), "--bogus", "1"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 2 and "unknown option --bogus" in res.stderr
    # Nobody listens there: it waits --wait seconds for the cluster, then says so and fails.
    dead = ",".join(f"127.0.0.1:{p}" for p in free_ports(3))
    res = subprocess.run([str(script), "--engine", "podman", "--endpoints", dead, "--wait", "1"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 1 and "cluster not whole after 1 s" in res.stderr, res.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_run_tears_everything_down(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        [CHAOS, "run", "--duration", "60", "--nemesis", "pause", "--out", str(out)],
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # the workload is running once progress is reported
            if line.startswith("[   0.0/60s]"):
                break
        assert processes_mentioning(str(out)), "no node was started"
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=60)  # bounded: a hung teardown fails, fast
        assert proc.returncode == (143 if sig == signal.SIGTERM else 130), rest
    finally:
        proc.kill()
    assert "torn down" in rest
    assert processes_mentioning(str(out)) == []


HUNG_TEARDOWN = """
import subprocess, sys, trio
from pathlib import Path
import chaos.run as run
from chaos.cluster import LocalCluster

run.TEARDOWN_DEADLINE = float(sys.argv[2])
cluster = LocalCluster(Path(sys.argv[1]), nodes=1)

async def drive(opts):
    node = cluster.nodes[1]
    node.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)",
                                  sys.argv[1]], start_new_session=True)
    print("started", flush=True)
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):  # a teardown that never ends
            await trio.sleep_forever()

run.drive = drive
trio.run(run.drive_until_signalled, None)
"""


@pytest.mark.parametrize("deadline, signals", [(1.0, 1), (600.0, 2)])
def test_a_teardown_that_hangs_is_cut_short(tmp_path: Path, deadline: float,
                                            signals: int) -> None:
    """The teardown after a signal has a deadline, and a second signal cuts it short: either
    way every node's process group is killed and the run exits with the signal's status."""
    proc = subprocess.Popen([sys.executable, "-c", HUNG_TEARDOWN, str(tmp_path), str(deadline)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        assert processes_mentioning(str(tmp_path))
        proc.send_signal(signal.SIGINT)
        if signals == 2:  # the second one while the first is being handled
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert ("ran past 1 s" if signals == 1 else "a second signal") in err
    assert processes_mentioning(str(tmp_path)) == []
