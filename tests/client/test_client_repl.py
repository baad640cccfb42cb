"""The REPL as a user meets it: a real process fed through a pipe while the leader dies,
and a real terminal (tmux) with the prompt, Tab completion, colour and history."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)
CLI = str(Path(sys.executable).parent / "raftkv-cli")


def eps(c: LocalCluster) -> str:
    return ",".join(n.client_addr for n in c.nodes.values())


def test_scripted_repl_survives_a_leader_kill(own_cluster: LocalCluster) -> None:
    c = own_cluster
    leader = c.wait_for_leader()
    proc = subprocess.Popen([CLI, "-e", eps(c)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def ask(line: str, replies: int = 1) -> list[bytes]:
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()
        return [proc.stdout.readline() for _ in range(replies)]

    try:
        assert ask("set a=1") == [b"OK\n"]
        assert ask("incr n") == [b"1\n"]
        c.kill(leader)
        assert ask("set b=2") == [b"OK\n"]  # meets the dead connection, retried elsewhere
        assert ask("get a") == [b"1\n"]
        assert ask("incr n") == [b"2\n"]
        assert ask("mget a b n", 3) == [b"1\n", b"2\n", b"2\n"]
        header, *rows = ask("status", 4)
        assert header.split()[:2] == [b"ID", b"ENDPOINT"]
        down = [r for r in rows if r.split()[0] == str(leader).encode()]
        assert down and b"down" in down[0]
        assert sum(b" leader " in r for r in rows) == 1
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    status = subprocess.run([CLI, "-e", eps(c), "status"], capture_output=True, timeout=30)
    assert status.returncode == 1  # a node is down


class Tmux:
    """A private tmux server (its own socket) running one raftkv-cli session."""

    def __init__(self, sock: Path, env: dict[str, str]) -> None:
        self.base = ["tmux", "-S", str(sock)]
        self.env = env

    def start(self, *command: str) -> None:
        subprocess.run([*self.base, "new-session", "-d", "-s", "cli", "-x", "160", "-y", "40",
                        *command], env=self.env, check=True, timeout=30)

    def type(self, text: str, *keys: str) -> None:
        if text:
            subprocess.run([*self.base, "send-keys", "-t", "cli", "-l", text], check=True,
                           timeout=30)
        if keys:
            subprocess.run([*self.base, "send-keys", "-t", "cli", *keys], check=True,
                           timeout=30)

    def screen(self, escapes: bool = False) -> str:
        out = subprocess.run([*self.base, "capture-pane", "-p", *(["-e"] if escapes else []),
                              "-t", "cli"], capture_output=True, text=True, timeout=30)
        return out.stdout

    def wait_for(self, check: Callable[[str], bool], escapes: bool = False) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = self.screen(escapes)
            if check(screen):
                return screen
            time.sleep(0.05)  # polling another process's screen: there is no event
        raise AssertionError(f"screen never matched:\n{self.screen()}")

    def alive(self) -> bool:
        return subprocess.run([*self.base, "has-session", "-t", "cli"], capture_output=True,
                              timeout=30).returncode == 0

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30)


def test_terminal_session(cluster: LocalCluster, tmp_path: Path) -> None:
    leader = cluster.nodes[cluster.wait_for_leader()].client_addr
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(HOME=str(tmp_path), RAFTKV_ENDPOINTS=eps(cluster))
    tmux = Tmux(tmp_path / "tmux.sock", env)
    tmux.start(CLI)
    try:
        prompt = f"raftkv {leader}> "
        tmux.wait_for(lambda s: s.rstrip("\n").endswith(prompt.rstrip()))
        tmux.type("INC", "Tab")
        tmux.wait_for(lambda s: s.rstrip().endswith(f"{prompt}INCR"))
        tmux.type(" tty:n", "Enter")
        tmux.wait_for(lambda s: "(integer) 1" in s)
        tmux.type("set mykey=hello", "Enter")
        tmux.type("get mykey", "Enter")
        tmux.wait_for(lambda s: '"hello"' in s)
        tmux.type("incr mykey", "Enter")
        screen = tmux.wait_for(lambda s: "(error) ERR value is not an integer" in s,
                               escapes=True)
        assert "\x1b[31m(error) ERR value" in screen  # red on a terminal
        tmux.type("help INCR", "Enter")
        tmux.wait_for(lambda s: "INCR key" in s)
        tmux.type("", "Up", "Up", "Enter")  # history: `incr mykey` again
        tmux.wait_for(lambda s: s.count("(error) ERR value is not an integer") == 2)
        tmux.type("quit", "Enter")
        deadline = time.monotonic() + 30
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # the session ends when raftkv-cli exits
        assert not tmux.alive()
        lines = (tmp_path / ".raftkv_history").read_text().splitlines()
        assert "set mykey=hello" in lines and "help INCR" in lines
    finally:
        tmux.close()
