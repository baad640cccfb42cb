"""A typed AUTH in raftkv-cli's REPL holds for the connections it opens later
(client.typed_auth; the reconnect case is tests/attack/test_attack22_repl_auth_lost.py)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from client.security import Security, tls_context
from client.typed_auth import after_success, typed_credentials

pytestmark = pytest.mark.timeout(120)

FLAGS = Security(username="admin", password="s3cret")  # --user admin --pass s3cret


@pytest.mark.parametrize(("args", "pair"), [
    ([b"AUTH", b"pw"], (None, b"pw")),
    ([b"auth", b"app", b"apppw"], (b"app", b"apppw")),
    ([b"AUTH", b"app", b""], (b"app", b"")),  # a nopass user takes any password
    ([b"HELLO", b"2", b"AUTH", b"app", b"apppw"], (b"app", b"apppw")),
    ([b"hello", b"2", b"setname", b"n", b"auth", b"a", b"1", b"AUTH", b"b", b"2"],
     (b"b", b"2")),  # the node checks the last AUTH option
    ([b"AUTH"], None),
    ([b"AUTH", b"a", b"b", b"c"], None),  # a syntax error: nothing authenticated
    ([b"HELLO"], None),
    ([b"HELLO", b"2"], None),
    ([b"HELLO", b"2", b"AUTH", b"app"], None),
    ([b"HELLO", b"2", b"SETNAME", b"n", b"bogus"], None),
    ([b"GET", b"AUTH"], None),
])
def test_typed_credentials(args: list[bytes], pair: tuple[bytes | None, bytes] | None) -> None:
    assert typed_credentials(args) == pair


def test_a_successful_auth_replaces_the_credentials_and_keeps_tls() -> None:
    ctx = tls_context()
    current = Security(ctx, "admin", "s3cret")
    after = after_success(current, current, [b"AUTH", b"app", b"apppw"])
    assert after == Security(ctx, b"app", b"apppw")
    assert after is not None and after.auth_args() == ["AUTH", b"app", b"apppw"]
    anonymous = after_success(None, None, [b"AUTH", b"pw"])
    assert anonymous is not None and anonymous.auth_args() == ["AUTH", b"pw"]
    # An empty password is sent, not taken for "no AUTH" (the connection would be default).
    empty = after_success(None, None, [b"AUTH", b"app", b""])
    assert empty is not None and empty.auth_args() == ["AUTH", b"app", b""]


def test_other_commands_change_nothing_and_reset_goes_back_to_the_flags() -> None:
    typed = Security(username=b"app", password=b"apppw")
    assert after_success(typed, FLAGS, [b"SET", b"k", b"v"]) is typed
    assert after_success(typed, FLAGS, [b"AUTH"]) is typed
    assert after_success(typed, FLAGS, [b"reset"]) is FLAGS
    assert after_success(typed, None, [b"RESET"]) is None


ACL = "user app on >apppw ~app:* +@all -@admin -@dangerous\n"  # no channels


@pytest.fixture
def acl_node(tmp_path: Path) -> Iterator[LocalCluster]:
    acl = tmp_path / "users.acl"
    acl.write_text(ACL)
    with LocalCluster(tmp_path / "c", nodes=1, fsync="never",
                      extra_args=["--acl-file", str(acl)]) as c:
        c.wait_for_leader()
        yield c


def test_subscribe_after_a_typed_auth_runs_as_that_user(acl_node: LocalCluster) -> None:
    """SUBSCRIBE opens a connection of its own: as ``app`` (no channels) it is refused;
    it subscribed as ``default`` before."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "client", "-e", acl_node.nodes[1].client_addr],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()
    assert proc.stdin is not None
    try:
        proc.stdin.write("AUTH app apppw\nSUBSCRIBE news\nACL WHOAMI\n")
        proc.stdin.flush()
        got = [lines.get(timeout=60) for _ in range(3)]
    finally:
        proc.kill()
        proc.wait()
    assert got[0] == "OK"
    assert got[1].startswith("NOPERM"), f"SUBSCRIBE after AUTH app answered {got[1:]}"
    assert got[2] == "app"
