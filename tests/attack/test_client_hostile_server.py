"""The client library against a hostile server (attack5 branch, round 5). Failed before the
fix.

The client speaks RESP2 (it never sends HELLO 3) and read whatever came back. Live, a
server that answers ``INFO raft`` with an error (so the client settles on it) and then:

* answers ``GET`` with ``*4`` of 512 MiB bulk strings: the client held 1.5 GB (peak RSS
  1570 MB) before its attempt timed out; with ``*1000000000`` of them, as much as the
  6 s attempt can carry. There was no bound on a reply's total size, only on one bulk;
* answers ``GET`` with a RESP3 push (``>3 message c m``): ``get`` returned the list
  ``[b"message", b"c", b"m"]`` as the value. A RESP3 type on a RESP2 connection is a
  protocol error (as a map, set, boolean or double would be), not a reply.

Each must fail cleanly (a ``RaftKVError`` at the deadline, the connection dropped), in
bounded memory.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator

import pytest

pytestmark = pytest.mark.timeout(60)

CHILD = """
    import sys
    import client.connection
    client.connection.MAX_REPLY_BYTES = int(sys.argv[2])
    from client.errors import RaftKVError
    from client.sync import SyncClient
    try:
        reply = SyncClient([sys.argv[1]], timeout=3, attempt_timeout=2, sessions=False).get("x")
        print("reply", repr(reply)[:200])
    except RaftKVError as exc:
        print("error", type(exc).__name__, str(exc)[:300])
    # The peak of this process's own memory (VmHWM, kB). Not getrusage's ru_maxrss: Linux
    # keeps it across execve, so after a vfork from a large pytest it reported the
    # parent's peak (224-397 MB, a flake whenever a big test module ran first).
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("maxrss_mb", int(hwm.split()[1]) // 1024)
"""


def _big_bulks(conn: socket.socket) -> None:
    conn.sendall(b"*1000000000\r\n")
    block = b"x" * (1 << 20)
    while True:
        conn.sendall(b"$268435456\r\n")
        for _ in range(256):
            conn.sendall(block)
        conn.sendall(b"\r\n")


def _push(conn: socket.socket) -> None:
    conn.sendall(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n")


@pytest.fixture
def hostile() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    servers: list[socket.socket] = []

    def start(answer: Callable[[socket.socket], None]) -> str:
        srv = socket.create_server(("127.0.0.1", 0))
        servers.append(srv)

        def handle(conn: socket.socket) -> None:
            with conn:
                try:
                    conn.recv(65536)  # INFO raft
                    conn.sendall(b"-ERR not telling\r\n")
                    while conn.recv(65536):  # each GET
                        answer(conn)
                except OSError:
                    pass

        def accept() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return f"127.0.0.1:{srv.getsockname()[1]}"

    yield start
    for srv in servers:
        srv.close()


def _client(addr: str, max_reply: int) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), addr, str(max_reply)],
                          capture_output=True, text=True, timeout=40)
    out = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert "maxrss_mb" in out, done.stderr[-1500:]
    return out


def test_a_reply_larger_than_the_bound_fails_cleanly_in_bounded_memory(hostile) -> None:
    out = _client(hostile(_big_bulks), 16 * 1024 * 1024)
    assert "error" in out and "reply" not in out, out
    assert int(out["maxrss_mb"]) < 200, out


def test_a_resp3_push_is_not_taken_as_a_resp2_reply(hostile) -> None:
    out = _client(hostile(_push), 16 * 1024 * 1024)
    assert "error" in out and "reply" not in out, out
