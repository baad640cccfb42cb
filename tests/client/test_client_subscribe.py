"""SUBSCRIBE in raftkv-cli (client/subscribe_cli.py): messages are printed as they arrive,
Ctrl-C leaves (back to the prompt in the REPL, whose own connection is never subscribed)."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call

pytestmark = pytest.mark.timeout(120)
CLI = [sys.executable, "-m", "client"]


@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, nodes=1, fsync="never") as c:
        c.wait_for_leader()
        yield c


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str], text: str) -> list[str]:
    seen: list[str] = []
    while text not in (seen[-1] if seen else ""):
        try:
            seen.append(lines.get(timeout=30))
        except queue.Empty:
            raise AssertionError(f"no {text!r} in {seen}") from None
    return seen


def test_repl_prints_messages_and_ctrl_c_returns_to_the_prompt(one_node: LocalCluster) -> None:
    addr = one_node.nodes[1].client_addr
    proc = subprocess.Popen([*CLI, "-e", addr], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    lines = _lines(proc)
    try:
        proc.stdin.write("psubscribe ne*\n")
        proc.stdin.flush()
        assert _until(lines, "1") == ["psubscribe\n", "ne*\n", "1\n"]
        assert call(addr, "PUBLISH", "news", "first", timeout=10.0) == 1
        assert _until(lines, "first") == ["pmessage\n", "ne*\n", "news\n", "first\n"]

        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while call(addr, "PUBSUB", "NUMPAT", timeout=5.0) != 0:
            assert time.monotonic() < deadline, "Ctrl-C left the subscription open"
            time.sleep(0.05)  # another process's progress: nothing to wait on
        proc.stdin.write("set after ctrl-c\nget after\n")  # the session's connection works
        proc.stdin.close()
        assert "".join(_until(lines, "ctrl-c")).strip().endswith("OK\nctrl-c")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_one_shot_ctrl_c_exits_130_and_an_error_reply_exits_1(one_node: LocalCluster) -> None:
    addr = one_node.nodes[1].client_addr
    proc = subprocess.Popen([*CLI, "-e", addr, "SUBSCRIBE", "a", "b"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = _lines(proc)
    try:
        assert _until(lines, "2") == ["subscribe\n", "a\n", "1\n", "subscribe\n", "b\n", "2\n"]
        assert call(addr, "PUBLISH", "b", "to-b", timeout=10.0) == 1
        assert _until(lines, "to-b") == ["message\n", "b\n", "to-b\n"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
        proc.wait()

    refused = subprocess.run([*CLI, "-e", addr, "SUBSCRIBE"], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1, refused
    assert "wrong number of arguments" in refused.stdout
