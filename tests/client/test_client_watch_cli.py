"""raftkv-cli watch against stand-in nodes (fake_feed.py): lines, --json, --from, exits."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_feed import FeedThread

from client.cli import main
from client.feed import Change, ChangeId
from client.format import JSON, RAW, TTY
from client.watch_cli import render


@pytest.fixture
def nodes() -> Iterator[FeedThread]:
    t = FeedThread(2)
    try:
        yield t
    finally:
        t.close()


def write(t: FeedThread, key: str, value: str | None, op: str = "set") -> None:
    t.call(functools.partial(t.feed.write, key, value, op))


def cli(t: FeedThread, *args: str) -> tuple[int, str]:
    eps = ",".join(n.addr for n in t.nodes)
    r = CliRunner().invoke(main, ["-e", eps, *args])
    return r.exit_code, r.stdout


def test_lines_from_an_id_with_a_pattern(nodes: FeedThread) -> None:
    write(nodes, "user:1", "alice")
    write(nodes, "other", "x")
    write(nodes, "user:2", None, "del")
    write(nodes, "user:1", "bob")
    code, out = cli(nodes, "watch", "user:*", "--from", "1-0", "--count", "2")
    assert (code, out) == (0, "3-0 del user:2\n4-0 set user:1 bob\n")


def test_json_lines_before_or_after_the_command(nodes: FeedThread) -> None:
    write(nodes, "k", "v 1")
    for args in (["--json", "watch", "--from", "0", "--count", "1"],
                 ["watch", "--from", "0", "--count", "1", "--json"]):
        code, out = cli(nodes, *args)
        assert code == 0
        assert json.loads(out) == {"id": "1-0", "index": 1, "position": 0, "op": "set",
                                   "key": "k", "value": "v 1", "deadline": None}


def test_compacted_is_an_error_exit_1(nodes: FeedThread) -> None:
    write(nodes, "k", "1")
    write(nodes, "k", "2")
    nodes.call(functools.partial(setattr, nodes.feed, "floor", ChangeId(2, 0)))
    r = CliRunner().invoke(main, ["-e", ",".join(n.addr for n in nodes.nodes), "watch",
                                  "--from", "1-0"])
    assert r.exit_code == 1 and "change feed compacted" in r.stderr


def test_usage_errors_exit_2(nodes: FeedThread) -> None:
    assert cli(nodes, "watch", "--from", "yesterday")[0] == 2
    assert cli(nodes, "watch", "--count", "0")[0] == 2


def test_rendering_per_mode() -> None:
    c = Change(ChangeId(7, 2), "set", b"a b", b"\x00v", 1700000000000)
    assert render(c, TTY) == '7-2 set "a b" "\\x00v" deadline=1700000000000'
    assert render(c, RAW) == "7-2 set a b \x00v deadline=1700000000000"
    assert json.loads(render(c, JSON))["deadline"] == 1700000000000
    assert render(Change(ChangeId(1, 0), "flushall", b""), TTY) == '1-0 flushall ""'


def test_no_cluster_exits_2() -> None:
    r = CliRunner().invoke(main, ["-e", "127.0.0.1:1", "watch"])
    assert r.exit_code == 2 and "Could not connect" in r.stderr


CLI = str(Path(sys.executable).parent / "raftkv-cli")


def spawn(t: FeedThread, *args: str) -> subprocess.Popen[bytes]:
    eps = ",".join(n.addr for n in t.nodes)
    # SIGINT as in a terminal: a parent that ignores it (a shell's background job) passes
    # SIG_IGN on, and Python then leaves Ctrl-C ignored (the test failed so, once).
    return subprocess.Popen([CLI, "-e", eps, "watch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_a_real_process_prints_until_ctrl_c(nodes: FeedThread) -> None:
    write(nodes, "k", "1")
    proc = spawn(nodes, "--from", "0")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"1-0 set k 1\n"
        write(nodes, "k", "2")
        assert proc.stdout.readline() == b"2-0 set k 2\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()


def test_a_closed_pipe_ends_it_quietly(nodes: FeedThread) -> None:
    write(nodes, "k", "1")
    proc = spawn(nodes, "--from", "0")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"1-0 set k 1\n"
        proc.stdout.close()  # `| head -1`
        for i in range(50):  # enough writes for one to meet the closed pipe
            write(nodes, "k", str(i))
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()
