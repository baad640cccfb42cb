"""raftkv-cli against a live cluster: CliRunner for the command logic, real processes for
exit codes, pipes (a scripted REPL surviving a leader kill) and a real terminal (tmux)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_node import closed_port

from chaos.cluster import LocalCluster
from client import cli as cli_module
from client.cli import main
from client.format import RAW, TTY

pytestmark = pytest.mark.timeout(120)
CLI = str(Path(sys.executable).parent / "raftkv-cli")


def eps(c: LocalCluster) -> str:
    return ",".join(n.client_addr for n in c.nodes.values())


def run(c: LocalCluster, *args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, ["-e", eps(c), *args], input=input)


# -- one-shot, in process -------------------------------------------------------------------

def test_one_shot_set_get_and_formats(cluster: LocalCluster) -> None:
    r = run(cluster, "SET", "cli:a", "hello world")
    assert (r.exit_code, r.stdout) == (0, "OK\n")
    assert run(cluster, "GET", "cli:a").stdout == "hello world\n"  # piped: raw, like redis-cli
    assert run(cluster, "--raw", "GET", "cli:a").stdout == "hello world\n"
    assert run(cluster, "--no-raw", "GET", "cli:a").stdout == '"hello world"\n'
    assert run(cluster, "--no-raw", "GET", "cli:none").stdout == "(nil)\n"
    assert run(cluster, "--no-raw", "APPEND", "cli:a", "!").stdout == "(integer) 12\n"
    r = run(cluster, "--no-raw", "MGET", "cli:a", "cli:none")
    assert r.stdout == '1) "hello world!"\n2) (nil)\n'
    r = run(cluster, "--json", "MGET", "cli:a", "cli:none")
    assert json.loads(r.stdout) == ["hello world!", None]
    assert json.loads(run(cluster, "--json", "SET", "cli:b", "1").stdout) == "OK"
    # The original's form and negative numbers as arguments, not options.
    assert run(cluster, "set", "cli:c=x=y").stdout == "OK\n"
    assert run(cluster, "GET", "cli:c").stdout == "x=y\n"
    assert run(cluster, "INCRBY", "cli:n", "-5").stdout == "-5\n"


def test_one_shot_error_reply_exits_1(cluster: LocalCluster) -> None:
    run(cluster, "SET", "cli:s", "abc")
    r = run(cluster, "INCR", "cli:s")
    assert r.exit_code == 1
    assert r.stdout == "ERR value is not an integer or out of range\n\n"  # as redis-cli
    r = run(cluster, "--no-raw", "INCR", "cli:s")
    assert (r.exit_code, r.stdout) == (1, "(error) ERR value is not an integer or out of range\n")
    r = run(cluster, "--json", "NOSUCH")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"].startswith("ERR unknown command")


def test_no_cluster_exits_2() -> None:
    r = CliRunner().invoke(main, ["-e", f"{closed_port()},{closed_port()}", "GET", "a"])
    assert r.exit_code == 2
    assert "Could not connect to RaftKV" in r.stderr and "Connection refused" in r.stderr
    assert r.stdout == ""


def test_stdin_as_last_argument(cluster: LocalCluster) -> None:
    assert run(cluster, "-x", "SET", "cli:x", input=b"line one\nline two\n").exit_code == 0
    assert run(cluster, "--no-raw", "GET", "cli:x").stdout == '"line one\\nline two\\n"\n'


def test_endpoints_from_environment(cluster: LocalCluster) -> None:
    run(cluster, "SET", "cli:env", "yes")
    r = CliRunner().invoke(main, ["GET", "cli:env"], env={"RAFTKV_ENDPOINTS": eps(cluster)})
    assert (r.exit_code, r.stdout) == (0, "yes\n")
    r = CliRunner().invoke(main, ["GET", "x"], env={"RAFTKV_ENDPOINTS": closed_port()})
    assert r.exit_code == 2


def test_usage_errors_exit_2(cluster: LocalCluster) -> None:
    assert run(cluster, "--mode", "one-shot").exit_code == 2
    assert CliRunner().invoke(main, ["-e", "nonsense", "GET", "a"]).exit_code == 2


def test_a_mistyped_option_glued_to_its_value_is_refused_without_showing_it() -> None:
    """(attack22) ``--password=s3cret``: named in the usage error, its value not shown."""
    r = CliRunner().invoke(main, ["-e", closed_port(), "--password=s3cret", "GET", "k"])
    assert r.exit_code == 2
    assert "Unrecognized option or bad number of args for: '--password'" in r.output
    assert "s3cret" not in r.output


def test_status_table(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    for args in (["status"], ["STATUS"]):
        r = run(cluster, *args)
        assert r.exit_code == 0, r.output
        header, *rows = r.stdout.splitlines()
        assert header.split() == ["ID", "ENDPOINT", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG",
                                  "STATUS"]
        assert len(rows) == 3
        cells = {int(row.split()[0]): row.split() for row in rows}
        assert cells[leader][2] == "leader"
        assert sorted(row[2] for row in cells.values()) == ["follower", "follower", "leader"]
        assert {row[1] for row in cells.values()} == {n.client_addr
                                                      for n in cluster.nodes.values()}
        assert all(row[-1] == "up" for row in cells.values())
    data = json.loads(run(cluster, "--json", "status").stdout)
    assert [d["node_id"] for d in data] == [1, 2, 3]
    assert {d["role"] for d in data} == {"leader", "follower"}
    assert all(d["lag"] is not None and d["lag"] >= 0 for d in data)


def test_output_mode_and_colour_follow_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = cli_module._output(None, False)
    assert (out.mode, out.color) == (TTY, True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli_module._output(None, False).color is False
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    monkeypatch.delenv("NO_COLOR")
    out = cli_module._output(None, False)
    assert (out.mode, out.color) == (RAW, False)


# -- scripted REPL, in process --------------------------------------------------------------

def test_scripted_session_without_prompt(cluster: LocalCluster) -> None:
    r = run(cluster, input="set mykey=hello\nget mykey\n\nhelp incr\nexists mykey nope\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("OK\nhello\n  INCR key\n")
    assert r.stdout.endswith("1\n")
    assert "raftkv" not in r.stdout  # no prompt when stdin is not a terminal
    r = run(cluster, "--mode", "interactive", "--no-raw",
            input='SET "k 2" "two words"\nget "k 2"\nincr mykey\nquit\nget mykey\n')
    assert r.stdout == 'OK\n"two words"\n(error) ERR value is not an integer or out of range\n'
    assert r.exit_code == 1  # a scripted session exits with its worst status


# -- real processes -------------------------------------------------------------------------

def test_real_process_exit_codes(cluster: LocalCluster) -> None:
    base = [CLI, "-e", eps(cluster)]
    ok = subprocess.run([*base, "SET", "cli:p", "1"], capture_output=True, timeout=30)
    assert (ok.returncode, ok.stdout) == (0, b"OK\n")
    err = subprocess.run([*base, "APPEND", "cli:p", "x"], capture_output=True, timeout=30)
    assert err.returncode == 0
    err = subprocess.run([*base, "INCR", "cli:p"], capture_output=True, timeout=30)
    assert err.returncode == 1
    none = subprocess.run([CLI, "-e", closed_port(), "PING"], capture_output=True,
                          timeout=30)
    assert none.returncode == 2 and b"Could not connect" in none.stderr
    piped = subprocess.run([*base, "-x", "SET", "cli:q"], input=b"\x00\xffbin",
                           capture_output=True, timeout=30)
    assert piped.returncode == 0
    raw = subprocess.run([*base, "GET", "cli:q"], capture_output=True, timeout=30)
    assert raw.stdout == b"\x00\xffbin\n"  # raw output is byte-exact


def test_output_matches_redis_cli(cluster: LocalCluster) -> None:
    leader = cluster.nodes[cluster.wait_for_leader()].client_addr
    host, port = leader.rsplit(":", 1)
    run(cluster, "MSET", "rc:a", 'quote " back \\ nl \n', "rc:b", "\x01\x7f é", "rc:n", "12")
    commands = [["GET", "rc:a"], ["MGET", "rc:a", "rc:none", "rc:b"], ["GET", "rc:none"],
                ["STRLEN", "rc:a"], ["INCR", "rc:a"], ["SCAN", "0", "MATCH", "rc:*"],
                ["KEYS", "rc:nothing*"], ["EXISTS", "rc:a", "rc:b"], ["PING"]]
    for mode in (["--no-raw"], []):
        for cmd in commands:
            theirs = subprocess.run(["redis-cli", "-h", host, "-p", port, *mode, *cmd],
                                    capture_output=True, timeout=30).stdout
            ours = CliRunner().invoke(main, ["-e", leader, *mode, *cmd]).stdout_bytes
            assert ours == theirs, (mode, cmd)
