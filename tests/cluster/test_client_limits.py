"""Client-port limits on real nodes (issue 12): oversized requests, a client that never
reads, connection and descriptor limits, idle and first-command timeouts, --maxmemory."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster, NodeProcess
from raftkv.probe import call, parse_info
from wire.resp import encode_command
from wire.resp_reply import NEED_MORE, ReplyParser

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024


def start(tmp_path: Path, nodes: int = 3, args: list[str] | None = None,
          cluster_cls: type[LocalCluster] = LocalCluster) -> LocalCluster:
    c = cluster_cls(tmp_path, nodes=nodes, extra_args=args or [], fsync="never")
    c.start()
    try:
        c.wait_for_leader()
    except BaseException:
        c.close()
        raise
    return c


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = start(tmp_path)
    try:
        yield c
    finally:
        c.close()


def info(c: LocalCluster, node_id: int, section: str = "everything") -> dict[str, str]:
    return parse_info(call(c.nodes[node_id].client_addr, "INFO", section, timeout=10))


def leadership(c: LocalCluster) -> tuple[int, int]:
    leader = c.wait_for_leader()
    return leader, int(info(c, leader, "raft")["term"])


def rss(node: NodeProcess) -> int:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wait_for(cond: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)  # polling another process: no event to wait on
    raise AssertionError(f"timed out waiting for {what or cond}")


def retry(fn: Callable[[], object], timeout: float = 10.0) -> object:
    """``fn()``, again while it answers TRYAGAIN. Multi-MiB writes can still cost an
    election on a loaded machine (the WAL write and peer frames of the entry run on the
    loop: storage and transport, outside the client port); these tests are about what
    happens after the value is stored."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except redis.ResponseError as exc:
            if ("TRYAGAIN" not in str(exc) and "UNKNOWN" not in str(exc)) \
                    or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def client(c: LocalCluster, node_id: int, **kw: object) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, **{"socket_timeout": 10, **kw})


def read_reply(s: socket.socket) -> object:
    parser = ReplyParser()
    while True:
        data = s.recv(65536)
        if not data:
            raise ConnectionError("closed")
        parser.feed(data)
        if (reply := parser.next_reply()) is not NEED_MORE:
            return reply


def read_replies(s: socket.socket, n: int) -> list[object]:
    parser, replies = ReplyParser(), []
    while len(replies) < n:
        data = s.recv(1 << 20)
        if not data:
            raise ConnectionError("closed")
        parser.feed(data)
        while (reply := parser.next_reply()) is not NEED_MORE:
            replies.append(reply)
    return replies


def closed_by_server(s: socket.socket) -> bool:
    """Drain ``s``; True once the server closed it (EOF or reset)."""
    try:
        while True:
            data = s.recv(1 << 20)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# -- 1. request size -----------------------------------------------------------------------


def test_a_17_mb_set_gets_the_redis_protocol_error_and_costs_no_election(
    cluster: LocalCluster,
) -> None:
    leader, term = leadership(cluster)
    # Default --max-request-bytes (8 MiB): a 17 MB value, on the leader and on a follower.
    for node_id in (leader, leader % 3 + 1):
        with socket.create_connection(cluster.client_addr(node_id), timeout=10) as s:
            # (The server may close before all of it is sent; its reply came first.)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(encode_command("SET", "big", b"x" * 17_000_000))
            reply = read_reply(s)
            assert str(reply) == "ErrorReply(text='ERR Protocol error: invalid bulk length')"
            assert closed_by_server(s)  # closed after the error, as Redis does
    # Arguments each within the limit but together over it: RaftKV's own text.
    with socket.create_connection(cluster.client_addr(leader), timeout=10) as s:
        s.sendall(encode_command("MSET", "a", b"x" * (5 * MiB), "b", b"y" * (5 * MiB)))
        reply = read_reply(s)
        assert "ERR Protocol error: request larger than max-request-bytes" in str(reply)
    # Nothing above cost the leadership, or reached the log; the node keeps serving.
    assert leadership(cluster) == (leader, term)
    r = client(cluster, leader)
    assert r.exists("big", "a", "b") == 0
    assert r.set("fits", b"z" * MiB) is True


def test_a_pipeline_larger_than_the_query_buffer_is_throttled_not_refused(
    tmp_path: Path,
) -> None:
    # Query buffer 2 MiB: 24 pipelined SETs of 256 KiB (6 MiB) are read a few at a time,
    # as earlier ones are answered; all succeed, in order.
    c = start(tmp_path, nodes=1, args=["--client-query-buffer-limit", str(2 * MiB)])
    try:
        with socket.create_connection(c.client_addr(1), timeout=20) as s:
            s.sendall(b"".join(encode_command("SET", f"q{i}", bytes([65 + i]) * (MiB // 4))
                               for i in range(24)) + encode_command("MGET", "q0", "q23"))
            replies = read_replies(s, 25)
        assert [str(r) for r in replies[:24]] == ["SimpleString(text='OK')"] * 24
        assert replies[24] == [b"A" * (MiB // 4), bytes([65 + 23]) * (MiB // 4)]
    finally:
        c.close()


# -- 2. a client that does not read --------------------------------------------------------


def pipeline_gets_without_reading(c: LocalCluster, node_id: int, n: int) -> socket.socket:
    s = socket.create_connection(c.client_addr(node_id), timeout=2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(encode_command("GET", "v") * n)
    return s


def test_a_client_that_never_reads_is_disconnected_at_the_output_buffer_limit(
    tmp_path: Path,
) -> None:
    # Over half the 64 MiB limit the node stops reading the client's commands; a client
    # that then reads nothing for --client-output-stall-timeout is disconnected.
    cluster = start(tmp_path, args=["--client-output-stall-timeout", "1"])
    try:
        _never_reads(cluster)
    finally:
        cluster.close()


def _never_reads(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    assert retry(lambda: client(cluster, leader).set("v", b"x" * MiB)) is True
    leader, term = leadership(cluster)
    r = client(cluster, leader)
    node = cluster.nodes[leader]
    before = rss(node)
    bad = pipeline_gets_without_reading(cluster, leader, 1000)
    try:
        wait_for(lambda: int(info(cluster, leader)["client_output_buffer_disconnects"]) >= 1,
                 what="the non-reading client to be disconnected")
        assert rss(node) - before < 300 * MiB
        assert closed_by_server(bad)
    finally:
        bad.close()
    assert r.get("v") == b"x" * MiB  # other clients are served meanwhile
    assert leadership(cluster) == (leader, term)


def test_replies_are_streamed_so_a_stalled_reader_costs_no_copies(tmp_path: Path) -> None:
    # No output-buffer limit: only streaming keeps memory flat. 300 GETs of one 1 MiB
    # value share it; encoding every ready reply before sending (the old writer) cost 300 MiB.
    c = start(tmp_path, nodes=1, args=["--client-output-buffer-limit", "0"])
    try:
        r = client(c, 1)
        assert r.set("v", b"x" * MiB) is True
        before = rss(c.nodes[1])
        bad = pipeline_gets_without_reading(c, 1, 300)
        try:
            # All 300 replies are ready once the reads are confirmed: wait until the node's
            # writer is blocked on the full socket, then look at its memory.
            wait_for(lambda: int(info(c, 1)["raft_reads"]) >= 300, what="the reads")
            time.sleep(0.5)  # let a writer that would copy every reply do so
            assert rss(c.nodes[1]) - before < 100 * MiB
            assert r.get("v") == b"x" * MiB
        finally:
            bad.close()
    finally:
        c.close()


# -- 5. connections and descriptors -------------------------------------------------------


class NofileCluster(LocalCluster):
    """Nodes started under ``prlimit --nofile=256``."""

    def command(self, node: NodeProcess) -> list[str]:
        return ["prlimit", "--nofile=256:256", "--", *super().command(node)]


def _admitted(c: LocalCluster) -> socket.socket | None:
    """A new idle connection the node admitted (it answered PING), or None if refused."""
    s = socket.create_connection(c.client_addr(1), timeout=5)
    s.sendall(encode_command("PING"))
    if str(read_reply(s)) == "SimpleString(text='PONG')":
        return s
    s.close()
    return None


def test_under_256_descriptors_300_idle_clients_leave_room_for_storage(
    tmp_path: Path,
) -> None:
    c = start(tmp_path, nodes=1, args=["--snapshot-entries", "0"], cluster_cls=NofileCluster)
    socks: list[socket.socket] = []
    try:
        maxclients = int(info(c, 1)["maxclients"])
        assert maxclients == 256 - 96  # capped: the open-file limit minus the reserve
        r = client(c, 1)
        assert r.set("a", "1") is True
        refused = 0
        for _ in range(300):
            s = socket.create_connection(c.client_addr(1), timeout=5)
            s.sendall(encode_command("PING"))
            reply = read_reply(s)
            if str(reply) == "ErrorReply(text='ERR max number of clients reached')":
                refused += 1
                s.close()
            else:
                socks.append(s)
        assert refused == 300 - (maxclients - 1)  # r holds one
        r.close()  # room for one: the node sees the close soon
        snapshot = wait_for(lambda: _call_or_none(c, "RAFT", "SNAPSHOT"), what="a free slot")
        assert isinstance(snapshot, int) and snapshot > 0
        # That call's connection has closed: fill the free slot again, then a client is
        # refused, not crashed.
        filler = wait_for(lambda: _admitted(c), what="the slot taken again")
        socks.append(filler)
        assert _call_or_none(c, "SET", "b", "2") is None
        socks.pop().close()
        assert str(wait_for(lambda: _call_or_none(c, "SET", "b", "2"))) == \
            "SimpleString(text='OK')"
        assert c.nodes[1].alive
        log = c.nodes[1].log_path.read_text()
        assert "maxclients capped by the open-file limit" in log
    finally:
        for s in socks:
            s.close()
        c.close()


def _call_or_none(c: LocalCluster, *args: str) -> object:
    """A command's reply on a new connection, None if refused for max clients."""
    with socket.create_connection(c.client_addr(1), timeout=10) as s:
        s.sendall(encode_command(*args))
        reply = read_reply(s)
    return None if "max number of clients reached" in str(reply) else reply


def test_accept_under_descriptor_exhaustion_backs_off_and_recovers(tmp_path: Path) -> None:
    # maxclients above what the descriptors allow can only be forced by a limit lowered
    # after start; prlimit on the running process does that.
    c = start(tmp_path, nodes=1)
    socks: list[socket.socket] = []
    try:
        pid = c.nodes[1].proc.pid  # type: ignore[union-attr]
        fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={fds + 5}:"],
                       check=True)
        for _ in range(40):
            socks.append(socket.create_connection(c.client_addr(1), timeout=5))
        wait_for(lambda: "accept failed: out of descriptors" in c.nodes[1].log_path.read_text(),
                 what="the EMFILE log line")
        log_lines = c.nodes[1].log_path.read_text().count("accept failed")
        assert log_lines <= 2  # rate limited, not a line per attempt
        for s in socks:
            s.close()
        socks.clear()
        subprocess.run(["prlimit", f"--pid={pid}", "--nofile=4096:"], check=True)
        assert wait_for(lambda: _try_set(c), what="serving again") is True
        assert c.nodes[1].alive
    finally:
        for s in socks:
            s.close()
        c.close()


def _try_set(c: LocalCluster) -> bool:
    try:
        return client(c, 1, socket_timeout=2).set("x", "1") is True
    except redis.RedisError:
        return False


def test_idle_timeout_and_first_command_timeout_close_connections(tmp_path: Path) -> None:
    c = start(tmp_path, nodes=1, args=["--idle-timeout", "0.5",
                                       "--first-command-timeout", "0.5"])
    try:
        silent = socket.create_connection(c.client_addr(1), timeout=10)
        talker = socket.create_connection(c.client_addr(1), timeout=10)
        talker.sendall(encode_command("PING"))
        assert str(read_reply(talker)) == "SimpleString(text='PONG')"
        started = time.monotonic()
        assert closed_by_server(silent)
        assert closed_by_server(talker)
        assert time.monotonic() - started < 5
        assert int(info(c, 1)["client_timeouts"]) >= 2
    finally:
        c.close()


def test_connections_without_a_first_command_are_capped(tmp_path: Path) -> None:
    c = start(tmp_path, nodes=1, args=["--max-new-clients", "5"])
    socks: list[socket.socket] = []
    try:
        socks = [socket.create_connection(c.client_addr(1), timeout=10) for _ in range(5)]
        # (INFO itself would come on a sixth new connection: poll with it until refused.)
        refused = wait_for(lambda: "too many connections that have not sent a command"
                           in str(_call_or_none(c, "PING")), what="the sixth refused")
        assert refused
        socks[0].sendall(encode_command("PING"))  # one registers: room for another
        assert str(read_reply(socks[0])) == "SimpleString(text='PONG')"
        with socket.create_connection(c.client_addr(1), timeout=10) as extra:
            extra.sendall(encode_command("PING"))
            assert str(read_reply(extra)) == "SimpleString(text='PONG')"
    finally:
        for s in socks:
            s.close()
        c.close()


# -- 4. maxmemory -------------------------------------------------------------------------


def test_maxmemory_refuses_growing_writes_with_redis_oom_and_allows_reads_and_deletes(
    tmp_path: Path,
) -> None:
    c = start(tmp_path, nodes=3, args=["--maxmemory", str(150 * MiB)])
    try:
        leader = c.wait_for_leader()
        r = client(c, leader)
        value = b"m" * MiB
        stored = []
        with pytest.raises(redis.ResponseError) as oom:
            for i in range(400):
                retry(lambda i=i: r.set(f"m{i}", value))
                stored.append(f"m{i}")
        leader = c.wait_for_leader()
        follower = leader % 3 + 1
        r = client(c, leader)
        assert str(oom.value) == "command not allowed when used memory > 'maxmemory'."
        assert stored and len(stored) < 400
        assert r.get(stored[0]) == value
        with pytest.raises(redis.ResponseError, match="used memory > 'maxmemory'"):
            r.incr("counter")
        with pytest.raises(redis.ResponseError, match="used memory > 'maxmemory'"):
            client(c, follower).set("via-follower", "x")  # refused on the follower
        assert r.delete(*stored) == len(stored)  # deletes work
        assert int(info(c, leader)["oom_refused_commands"]) >= 2
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
