"""Judging a collected run and writing its report, from hand-made histories."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from chaos import history as hist
from chaos import report
from chaos.cluster import LocalCluster
from chaos.history import Op
from chaos.nemesis import Injected
from chaos.run import Collected, RunOptions, analyse, options_to_args


def op(p: int, f: str, value: object, t0: float, t1: float | None, outcome: str = "ok",
       result: bool | None = None, key: str = "k0") -> Op:
    return Op(p, key, f, value, t0, t1, outcome, result, "n1", None)  # type: ignore[arg-type]


def collected(history: list[Op], final: dict[str, object], faults=()) -> Collected:  # type: ignore[no-untyped-def]
    return Collected(tuple(history), tuple(faults), ("latency: not available",), final, (),
                     10.0, 1)


def opts(tmp_path: Path) -> RunOptions:
    return RunOptions(duration=10.0, keys=1, seed=5, out=tmp_path / "out", max_election=3.0)


def test_a_clean_run_passes_and_writes_every_file(tmp_path: Path) -> None:
    history = [op(0, "write", 1, 0.0, 0.1), op(1, "read", 1, 0.2, 0.3),
               op(0, "cas", [1, 2], 4.0, 4.5, result=True),
               op(2, "write", 3, 5.0, None, "info"),
               *(op(1, "read", 1, t, t + 0.1) for t in (1.0, 2.0)),
               *(op(1, "read", 2, t, t + 0.1) for t in (6.0, 7.0, 8.0, 9.0))]
    faults = [Injected("kill-leader", 3.0, 5.5, "kill -9 n1", (1,))]
    result = analyse(opts(tmp_path), collected(history, {"k0": 2}, faults))
    assert result.ok and result.exit_code == 0
    assert [c.name for c in result.checks] == ["linearizability", "durability",
                                               "availability", "nodes"]
    (election,) = result.availability.elections
    assert election.latency == 4.5 - 3.0  # fault start -> the CAS's completion

    report.write(result)
    out = tmp_path / "out"
    assert hist.load(out / "history.jsonl") == history
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["seed"] == 5
    assert summary["operations"]["by_outcome"] == {"ok": 9, "info": 1}
    assert summary["faults"][0]["kind"] == "kill-leader"
    assert summary["election_latency"]["max"] == 1.5
    text = (out / "summary.txt").read_text().splitlines()
    assert text[-1].startswith("PASS: 10 operations, 1 faults")
    assert any("kill -9 n1" in line for line in text)
    assert any("not done: latency" in line for line in text)
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (out / "timeline.png").exists() == has_matplotlib


def test_a_stale_read_fails_linearizability_and_the_exit_code(tmp_path: Path) -> None:
    history = [op(0, "write", 1, 0.0, 0.1), op(0, "write", 2, 0.2, 0.3),
               op(1, "read", 1, 0.5, 0.6)]  # reads 1 after 2 was acknowledged
    result = analyse(opts(tmp_path), collected(history, {"k0": 2}))
    assert not result.ok and result.exit_code == 1
    checks = {c.name: c for c in result.checks}
    assert not checks["linearizability"].ok
    assert not checks["durability"].counted  # judged by linearizability, not twice
    assert result.verdict.startswith("FAIL: linearizability")
    text = report.render(result)
    assert "read 1 but the register holds 2" in text


def test_a_lost_write_fails_durability(tmp_path: Path) -> None:
    history = [op(0, "write", 1, 0.0, 0.1), op(0, "write", 2, 0.2, 0.3)]
    result = analyse(opts(tmp_path), collected(history, {"k0": 1}))  # 2 vanished
    checks = {c.name: c for c in result.checks}
    assert not checks["durability"].ok and "1 acknowledged writes lost" in checks[
        "durability"].summary


def test_a_missing_final_read_and_a_crash_fail(tmp_path: Path) -> None:
    history = [op(0, "write", 1, 0.0, 0.1)]
    col = Collected(tuple(history), (), (), {}, ("n2 exited on its own with status 1",),
                    10.0, 1)
    result = analyse(opts(tmp_path), col)
    checks = {c.name: c for c in result.checks}
    assert not checks["durability"].ok and "no final read of k0" in checks["durability"].summary
    assert not checks["nodes"].ok
    assert result.exit_code == 1


def test_no_recovery_after_a_leader_fault_fails_availability(tmp_path: Path) -> None:
    history = [op(0, "write", 1, 0.0, 0.1), op(0, "write", 2, 8.0, 8.1)]
    faults = [Injected("isolate-leader", 2.0, 4.0, "n1 cut off", (1,))]
    result = analyse(opts(tmp_path), collected(history, {"k0": 2}, faults))
    checks = {c.name: c for c in result.checks}
    assert not checks["availability"].ok
    assert "isolate-leader at 2.0 s recovered 6.1 s" in checks["availability"].summary


def test_options_to_args_round_trip() -> None:
    from click.testing import CliRunner

    from chaos.cli import main

    args = options_to_args(RunOptions(seed=9, nemeses=("kill", "split"), unsafe_stale_reads=True,
                                      quiet=True))
    assert args[:1] == ["run"]
    assert args[args.index("--nemesis") + 1] == "kill,split"
    assert "--unsafe-stale-reads" in args and "--quiet" in args
    # They parse: a bad value would make click exit 2 before anything starts.
    res = CliRunner().invoke(main, [*args, "--net", "docker"])
    assert res.exit_code == 2 and "--endpoints" in res.output


def test_cluster_gives_each_node_its_own_view_of_its_peers(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, 3, hosts=["127.0.0.1", "127.0.0.2", "127.0.0.3"],
                     ports=[(7001, 7101)] * 3,
                     peer_maps={1: {2: "127.0.0.1:9012", 3: "127.0.0.1:9013"}},
                     node_args={2: ["--unsafe-stale-reads"]})
    assert c.nodes[2].client_addr == "127.0.0.2:7001"
    assert c.cluster_arg_for(1) == "1=127.0.0.1:7101,2=127.0.0.1:9012,3=127.0.0.1:9013"
    assert c.cluster_arg_for(3) == "1=127.0.0.1:7101,2=127.0.0.2:7101,3=127.0.0.3:7101"
    cmd = c.command(c.nodes[2])
    assert cmd[cmd.index("--cluster") + 1] == c.cluster_arg_for(2)
    assert cmd[-1] == "--unsafe-stale-reads"
    assert "--unsafe-stale-reads" not in c.command(c.nodes[1])


def test_a_missing_plot_library_prints_a_hint(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    history = [op(0, "write", 1, 0.0, 0.1), *(op(1, "read", 1, t, t + 0.1) for t in range(1, 10))]
    result = analyse(opts(tmp_path), collected(history, {"k0": 1}))
    monkeypatch.setattr(report, "plot", lambda *_: False)  # as when matplotlib is missing
    report.write(result)
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not (result.options.out / "timeline.png").exists()


def test_the_partition_verdict_needs_the_node_back_and_99_9_percent_uptime(
        tmp_path: Path) -> None:
    from chaos import partition

    cut = [Injected("isolate-leader", 2.0, 5.0, "n2 cut off from {n1,n3}", (2,))]
    steady = [op(1, "write", t, t, t + 0.1, key=f"w{t}") for t in range(10)]
    back_read = Op(3, "k0", "read", None, 6.0, 6.4, "ok", None, "n2", None)
    result = analyse(opts(tmp_path), collected(steady, {"k0": None}, cut))
    report = partition.analyse(result)
    assert not report.rejoined and not report.ok and report.replication is None
    assert any("n2 did NOT serve again" in line for line in report.lines)
    result = analyse(opts(tmp_path), collected([*steady, back_read], {"k0": None}, cut))
    report = partition.analyse(result)
    assert report.rejoined and report.ok and report.uptime == 1.0
    assert report.replication == pytest.approx(1.4)  # reconnect at 5.0 -> read done at 6.4
    gap = [o for o in steady if not 3 <= o.invoke < 5]  # two silent 1 s windows
    report = partition.analyse(analyse(opts(tmp_path), collected([*gap, back_read],
                                                                   {"k0": None}, cut)))
    assert report.rejoined and not report.ok and report.uptime is not None
    assert report.uptime < partition.MIN_UPTIME


def test_tls_option_round_trip_and_secured_cluster(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from chaos.cli import main
    from chaos.run import secure_cluster

    args = options_to_args(RunOptions(seed=9, tls=True))
    assert "--tls" in args and "--tls" not in options_to_args(RunOptions(seed=9))
    res = CliRunner().invoke(main, [*args, "--net", "netns"])
    assert res.exit_code == 2 and "--net proxy, nft or none" in res.output
    for name in ("RAFTKV_CACERT", "RAFTKV_PASSWORD", "RAFTKV_REQUIREPASS"):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores them afterwards
    kw = secure_cluster(tmp_path)
    c = LocalCluster(tmp_path / "nodes", 3, **kw)
    cmd = c.command(c.nodes[1])
    assert "--tls-cert" in cmd and "--peer-tls-ca" in cmd
    assert os.environ["RAFTKV_REQUIREPASS"] == os.environ["RAFTKV_PASSWORD"]
    assert os.environ["RAFTKV_CACERT"] == str(tmp_path / "certs" / "ca.crt")
