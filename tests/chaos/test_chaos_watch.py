"""raftkv-chaos run --watchers with real nodes: the watch check holds under kills, and it
finds a gap when a watcher forgets changes (the hidden TEST ONLY --unsafe-watch-drop)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
CHAOS = str(Path(sys.executable).parent / "raftkv-chaos")


def run(out: Path, *extra: str) -> tuple[int, dict[str, dict[str, object]]]:
    proc = subprocess.run([CHAOS, "run", "--duration", "8", "--nemesis", "kill-leader",
                           "--clients", "4", "--counters", "1", "--watchers", "3",
                           "--seed", "5", "--out", str(out), "--quiet", *extra],
                          capture_output=True, text=True, timeout=110)
    checks = json.loads((out / "summary.json").read_text())["checks"]
    return proc.returncode, {c["name"]: c for c in checks}


def test_watchers_through_a_leader_kill_pass_the_watch_check(tmp_path: Path) -> None:
    code, checks = run(tmp_path)
    assert checks["watch"]["ok"], checks["watch"]
    assert "3 watchers received" in str(checks["watch"]["summary"])
    assert code == 0, checks


def test_a_watcher_that_forgets_changes_fails_the_check(tmp_path: Path) -> None:
    code, checks = run(tmp_path, "--unsafe-watch-drop", "7")
    assert not checks["watch"]["ok"]
    assert "w0@n1: gap" in str(checks["watch"]["summary"])
    assert code == 1
