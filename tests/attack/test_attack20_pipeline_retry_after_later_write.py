"""attack20: the client's pipeline sends a refused write again after a later write of the
same pipeline was applied, so it applies out of order.

With sessions (the default), every write of a pipeline goes as ``RAFT ONCE sid seq ...``
and counts as safe to send again. When the first of ``APPEND k a,; APPEND k b,`` is
answered ``-TRYAGAIN`` (not applied) and the second ``:2`` (applied), ``_retry_loop``
sends the suffix from the first ``TryAgain`` again, both commands: the server applies
``a,`` now, after ``b,`` (the second is a duplicate, answered from the session table), and
the caller gets ``[4, 2]``-like replies for ``k = "b,a,"``: its two appends, in the
wrong order, both reported done. Without sessions the client leaves the ``TryAgain`` to the
caller (``b,`` answered, not safe to resend).

The server answers exactly that (a definite refusal, then an applied write) in several
places: round 19's forwarded write refused during a transfer was one; a write parked at a
leader while a transfer runs longer than ``leader_wait`` is another (this round,
``test_attack20_parked_forward_expires``); so are a follower's ``QUEUE_FULL``,
``LINK_FULL`` and ``NOT_SENT``, and an ``-UNKNOWN`` (forward to a leader that changed)
before a write the new leader applies. Fixing each server path leaves the next; the
client's retry is where the order is lost, and it knows the replies.

Right (redis-py: a pipeline is never resent): a write is sent again only if no later
write of the same pipeline was applied (answered anything but ``-TRYAGAIN``/``-UNKNOWN``
or a lost reply); otherwise the earlier one is the caller's ``TryAgain`` (or
``OutcomeUnknown``), and the order the server applied stands.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from client.errors import RaftKVError
from client.sync import SyncClient

pytestmark = pytest.mark.timeout(60)

TRYAGAIN = b"-TRYAGAIN the command was not applied, retry\r\n"


def _commands(buf: bytearray) -> Iterator[list[bytes]]:
    """Complete RESP commands taken off the front of ``buf``."""
    while True:
        if not buf.startswith(b"*"):
            return
        end = buf.find(b"\r\n")
        if end < 0:
            return
        n, pos, args = int(buf[1:end]), end + 2, []
        for _ in range(n):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return
            size = int(buf[pos + 1:end])
            if len(buf) < end + 2 + size + 2:
                return
            args.append(bytes(buf[end + 2:end + 2 + size]))
            pos = end + 2 + size + 2
        del buf[:pos]
        yield args


class Server:
    """One address: ``INFO`` refused (the client settles on it), a session opened, and
    writes answered: the first pipeline of two ``-TRYAGAIN`` then ``:2``; later ones by
    the state it keeps (``k``'s value, a session table of replies)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.value = b""
        self.replies: dict[bytes, bytes] = {}
        self.first = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        with conn:
            while data := conn.recv(65536):
                buf += data
                out = b"".join(self._answer(args) for args in _commands(buf))
                conn.sendall(out)

    def _answer(self, args: list[bytes]) -> bytes:
        name = [a.lower() for a in args[:3]]
        if name[0] != b"raft":
            return b"-ERR not telling\r\n"
        if name[1:3] == [b"session", b"open"]:
            return b":77\r\n"
        if name[1] == b"once" and args[4].lower() == b"append":
            seq = args[3]
            if self.first and seq == b"1":
                return TRYAGAIN  # (refused: not applied, nothing recorded)
            if seq in self.replies:
                return self.replies[seq]  # a duplicate: the first reply, nothing applied
            self.first = False
            self.value += args[6]
            self.replies[seq] = b":%d\r\n" % len(self.value)
            return self.replies[seq]
        return b"-ERR unexpected\r\n"


def test_a_pipeline_never_resends_a_write_after_a_later_one_applied() -> None:
    server = Server()
    kv = SyncClient([server.addr], timeout=5, backoff_base=0.01, backoff_cap=0.02)
    try:
        pipe = kv.pipeline()
        pipe.append("k", "a,").append("k", "b,")
        replies = pipe.execute(raise_on_error=False)
    finally:
        kv.close()
        server.sock.close()
    # What the server applied, in order: never "a," after "b," (the caller wrote a, then b).
    assert server.value in (b"b,", b"a,b,"), (server.value, replies)
    if server.value == b"b,":
        assert isinstance(replies[0], RaftKVError), replies
