"""TTLs, transactions, scripts and locks on a real 3-node cluster, through redis-py.

Every node reads with its own clock (bounded below by the applied leader stamps, see
raftkv/node/clock.py). Here all nodes share the host's clock, so the documented
uncertainty is zero: once the client's clock (the same one) passes a key's deadline, no
node may show the key.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.lock import Lock

from chaos.cluster import ONE_ENTRY_PER_WRITE, LocalCluster

pytestmark = pytest.mark.timeout(120)

SNAPSHOT_EVERY = 200


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # the default configuration: scripts are on (redis-py's Lock releases by script)
    with LocalCluster(tmp_path, extra_args=["--snapshot-entries", str(SNAPSHOT_EVERY),
                                               # the leader on schedule: followers install
                                               "--snapshot-leader-defer", "1",
                                               *ONE_ENTRY_PER_WRITE]) as c:
        c.wait_for_leader()
        yield c


def client(c: LocalCluster, node_id: int, protocol: int = 2) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, socket_timeout=10, protocol=protocol)


def retry(fn: Callable, timeout: float = 15.0):
    """Call ``fn`` until it stops raising a retryable error (elections, restarts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError) as exc:
            retryable = "TRYAGAIN" in str(exc) or not isinstance(exc, redis.ResponseError)
            if time.monotonic() > deadline or not retryable:
                raise
            time.sleep(0.05)


def _try(fn: Callable, *allowed: type[BaseException]):
    """``fn()``, retried while TRYAGAIN or the connection fails; ``UNKNOWN`` (outcome not
    known: the leader died meanwhile) and ``allowed`` errors come back as None."""
    try:
        return retry(fn)
    except redis.ResponseError as exc:
        if "UNKNOWN" in str(exc):
            return None
        raise
    except allowed:
        return None


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling other processes: there is no event to wait on


def keyspace_keys(c: LocalCluster, node_id: int) -> int:
    info = client(c, node_id).info("keyspace")
    return int(info.get("db0", {}).get("keys", 0))


def test_expired_keys_are_invisible_on_every_node_after_the_deadline(
        cluster: LocalCluster) -> None:
    c = cluster
    nodes = {i: client(c, i) for i in c.nodes}
    leader = c.wait_for_leader()
    follower = next(i for i in c.nodes if i != leader)
    retry(lambda: nodes[leader].set("forever", "1"))
    assert retry(lambda: nodes[follower].set("k", "v", px=3000))
    assert retry(lambda: nodes[leader].execute_command("SETEX", "s", 2, "v"))
    deadlines = {key: nodes[follower].pexpiretime(key) for key in ("k", "s")}
    for key, deadline in deadlines.items():
        assert deadline > time.time() * 1000  # not removed before its deadline
        for r in nodes.values():
            value = r.get(key)
            if time.time() * 1000 < deadline:
                assert value == b"v", (key, value)
    last = max(deadlines.values())
    while time.time() * 1000 < last:
        time.sleep(0.01)
    for r in nodes.values():
        assert r.mget("k", "s") == [None, None]
        assert r.exists("k", "s") == 0
        assert r.ttl("k") == -2
        assert r.keys("*") == [b"forever"]
    # The leader's active expiry removes them from every replica's state too.
    wait_until(lambda: all(keyspace_keys(c, i) == 1 for i in c.nodes), "active expiry")


@pytest.mark.slow
def test_ttl_survives_snapshot_install_and_leader_kill(cluster: LocalCluster) -> None:
    c = cluster
    leader = c.wait_for_leader()
    lagging = next(i for i in c.nodes if i != leader)
    r = client(c, leader)
    assert retry(lambda: r.set("lease", "holder", ex=60))
    deadline = r.pexpiretime("lease")
    c.kill(lagging)
    with r.pipeline(transaction=False) as p:
        for i in range(3 * SNAPSHOT_EVERY):
            p.set(f"fill{i}", i)
        p.execute()
    c.start(lagging)
    log = c.nodes[lagging].log_path
    wait_until(lambda: "snapshot installed" in log.read_text(errors="replace"), "install")
    assert retry(lambda: client(c, lagging).pexpiretime("lease")) == deadline
    c.kill(leader)
    new_leader = c.wait_for_leader(exclude=leader)
    survivor = client(c, new_leader)
    assert retry(lambda: survivor.pexpiretime("lease")) == deadline
    assert retry(lambda: survivor.get("lease")) == b"holder"
    assert 0 < survivor.pttl("lease") <= 60_000
    # A key the new leader expires is expired by its stamps, not a clock reset.
    assert retry(lambda: survivor.set("short", "x", px=300))
    wait_until(lambda: survivor.exists("short") == 0, "short TTL under the new leader")
    c.start(leader)
    assert retry(lambda: client(c, leader).pexpiretime("lease")) == deadline


def test_transactions_never_interleave(cluster: LocalCluster) -> None:
    c = cluster
    workers, rounds = 6, 15
    errors: list[BaseException] = []
    results: list[list] = []
    unknown = 0

    def work(w: int) -> None:
        nonlocal unknown
        try:
            r = client(c, 1 + w % 3, protocol=2 + w % 2)  # every node, RESP2 and RESP3

            def transaction() -> list:
                with r.pipeline(transaction=True) as p:
                    return p.incr("counter").incr("counter").get("counter").execute()

            for _ in range(rounds):
                result = _try(transaction)  # None: UNKNOWN (a leader change; may have run)
                if result is None:
                    unknown += 1
                else:
                    results.append(result)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) + unknown == workers * rounds and unknown <= 3
    for first, second, read in results:
        assert second == first + 1 and read == str(second).encode()  # nothing in between
    seconds = sorted(r[1] for r in results)
    assert len(set(seconds)) == len(seconds) and all(x % 2 == 0 for x in seconds)
    total = int(client(c, 2).get("counter"))
    assert total % 2 == 0 and 2 * len(results) <= total <= 2 * (workers * rounds)


@pytest.mark.parametrize("protocol", [2, 3])
def test_watch_conflict_raises_watch_error_through_a_follower(cluster: LocalCluster,
                                                             protocol: int) -> None:
    c = cluster
    leader = c.wait_for_leader()
    follower = next(i for i in c.nodes if i != leader)
    r, other = client(c, follower, protocol), client(c, leader)
    retry(lambda: r.set("balance", 10))
    with r.pipeline() as p:
        p.watch("balance")
        value = int(p.get("balance"))
        other.set("balance", 100)  # a concurrent change after WATCH
        p.multi()
        p.set("balance", value - 1)
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("balance") == b"100"
    with r.pipeline() as p:  # unchanged: goes through
        p.watch("balance")
        value = int(p.get("balance"))
        p.multi()
        p.set("balance", value - 1)
        assert p.execute() == [True]
    assert other.get("balance") == b"99"
    # A syntax error while queuing aborts the whole transaction.
    with r.pipeline() as p:
        p.set("x", 1).execute_command("INCRBY", "x", "notanumber").set("y", 2)
        with pytest.raises(redis.ResponseError):
            p.execute()
    assert r.exists("x", "y") == 0
    with pytest.raises(redis.ResponseError, match="EXEC without MULTI"):
        r.execute_command("EXEC")


def _contend(c: LocalCluster, nodes: list[int], workers: int, rounds: int,
             on_progress: Callable[[], None] = lambda: None) -> list[tuple[float, float]]:
    """Threads through ``nodes`` take redis-py's Lock ``rounds`` times each; returns every
    critical section (from acquire() returning to release() being called)."""
    errors: list[BaseException] = []
    sections: list[tuple[float, float]] = []

    def work(w: int) -> None:
        try:
            r = client(c, nodes[w % len(nodes)])
            done = 0
            while done < rounds:
                lock = Lock(r, "guarded", timeout=3, blocking_timeout=30, sleep=0.01)
                if not _try(lock.acquire):
                    continue  # not acquired, or unknown: a lost token expires with its TTL
                start = time.monotonic()
                _try(functools.partial(lock.extend, 3))  # redis-py's extend script
                time.sleep(0.02)  # the critical section
                sections.append((start, time.monotonic()))
                _try(lock.release, redis.exceptions.LockNotOwnedError)
                done += 1
                on_progress()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert len(sections) == workers * rounds
    ordered = sorted(sections)
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert end <= start, "two holders at once"
    return sections


def test_redis_py_lock_never_has_two_holders(cluster: LocalCluster) -> None:
    _contend(cluster, list(cluster.nodes), workers=5, rounds=4)
    assert client(cluster, 1).exists("guarded") == 0


def test_scripts_and_everyday_commands(cluster: LocalCluster) -> None:
    c = cluster
    leader = c.wait_for_leader()
    follower = next(i for i in c.nodes if i != leader)
    r, other = client(c, follower), client(c, leader, protocol=3)
    add = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert retry(lambda: add(keys=["n"], args=[5])) == 5
    sha = retry(lambda: other.script_load("return ARGV[1]"))
    assert r.evalsha(sha, 0, "hello") == b"hello"  # loaded on one node, run through another
    assert r.script_exists(sha) == [True]
    assert r.eval_ro("return redis.call('GET', KEYS[1])", 1, "n") == b"5"
    assert r.setnx("a", 1) is True and r.setnx("a", 2) is False
    assert r.getset("a", 3) == b"1" and r.getdel("a") == b"3"
    assert r.incrbyfloat("f", 0.1) == pytest.approx(0.1)
    assert r.setrange("s", 2, "xy") == 4 and r.getrange("s", 2, 3) == b"xy"
    assert r.copy("s", "t") and r.rename("t", "u") and r.type("u") == b"string"
    assert r.object("encoding", "n") == b"int"
    assert r.msetnx({"m1": 1, "m2": 2}) is True and r.touch("m1", "m2", "zz") == 2
    assert r.expire("m1", 100, gt=True) is False and r.expire("m1", 100, nx=True) is True
    assert r.persist("m1") is True and r.ttl("m1") == -1
    assert r.getex("m2", px=5000) == b"2" and 0 < r.pttl("m2") <= 5000
    seconds, micros = r.time()
    assert abs(seconds + micros / 1e6 - time.time()) < 5
    assert r.randomkey() is not None
    assert sorted(k for k in r.scan_iter(_type="string")) == sorted(r.keys("*"))
    assert r.unlink("u") == 1 and r.flushdb() is True and r.dbsize() == 0
    for conn in (r, other):  # COMMAND knows the table, in RESP2 and RESP3
        table = conn.command()
        assert table["getex"]["arity"] == -2 and table["ttl"]["first_key_pos"] == 1
    assert r.command_count() >= len(table) + 4  # + MULTI, EXEC, DISCARD, UNWATCH, PING...
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'set' command"):
        r.set("k", "v", ex=0)


@pytest.mark.slow
def test_lock_holders_never_overlap_across_a_leader_kill(cluster: LocalCluster) -> None:
    """Threads contending through the two followers while the leader is killed."""
    c = cluster
    leader = c.wait_for_leader()
    followers = [i for i in c.nodes if i != leader]
    progress = 0
    killed = threading.Event()

    def kill_after_a_few() -> None:
        nonlocal progress
        progress += 1
        if progress == 4 and not killed.is_set():
            killed.set()
            c.kill(leader)

    _contend(c, followers, workers=4, rounds=6, on_progress=kill_after_a_few)
    assert killed.is_set()
    assert c.wait_for_leader(exclude=leader) != leader
