"""The replicated script cache is bounded (script_cache.py): EVAL keeps at most 500 bodies
and EVAL_CACHE_BYTES of them, evicting the least recently used; SCRIPT LOAD bodies are
never evicted but bounded in bytes; a body that does not compile is not cached; and the
cache, with its eviction order, survives a snapshot. All through the pure state machine,
the same on two replicas."""

from __future__ import annotations

import pytest

from raftkv.kv import KVStateMachine, decode_snapshot, encode_entry, encode_snapshot, script_cache
from raftkv.kv.script_cache import LOAD_OVER, script_sha
from wire.reply import ErrorReply

T0 = 1_700_000_000_000


SMALL = 20  # EVAL_CACHE_SCRIPTS in most tests here (500 bodies take ~3 s to compile)


@pytest.fixture
def small_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script_cache, "EVAL_CACHE_SCRIPTS", SMALL)


class Replicas:
    """Two replicas applying the same entries (one with ``single``): every reply and
    state must agree."""

    def __init__(self, single: bool = False) -> None:
        self.one = KVStateMachine()
        self.two = None if single else KVStateMachine()

    def __call__(self, *args: bytes) -> object:
        entry = encode_entry(list(args), T0)
        reply = self.one.apply(entry)
        if self.two is not None:
            assert self.two.apply(entry) == reply
        return reply

    def exists(self, *bodies: bytes) -> list[int]:
        reply = self(b"SCRIPT", b"EXISTS", *map(script_sha, bodies))
        assert isinstance(reply, list)
        return reply


def body(n: int) -> bytes:
    return b"return %d" % n


def test_eval_caches_at_most_500_and_evicts_the_oldest_never_a_loaded_one() -> None:
    assert script_cache.EVAL_CACHE_SCRIPTS == 500  # Redis 7.4's number
    kv = Replicas(single=True)
    loaded = b"return 'loaded'"
    assert kv(b"SCRIPT", b"LOAD", loaded) == script_sha(loaded)
    for n in range(500 + 1):
        assert kv(b"EVAL", body(n), b"0") == n
    assert kv.exists(body(0), body(1), body(500), loaded) == [0, 1, 1, 1]
    assert kv(b"EVALSHA", script_sha(body(0)), b"0") == ErrorReply(
        "NOSCRIPT No matching script. Please use EVAL.")


@pytest.mark.usefixtures("small_cache")
def test_eval_and_evalsha_make_a_cached_body_the_newest() -> None:
    kv = Replicas()
    for n in range(SMALL):
        kv(b"EVAL", body(n), b"0")
    assert kv(b"EVALSHA", script_sha(body(0)), b"0") == 0  # 0 is now the newest
    assert kv(b"EVAL", body(1), b"0") == 1  # and then 1
    kv(b"EVAL", body(SMALL), b"0")
    kv(b"EVAL", body(SMALL + 1), b"0")
    assert kv.exists(body(0), body(1), body(2), body(3), body(4)) == [1, 1, 0, 0, 1]


def test_eval_cache_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script_cache, "EVAL_CACHE_BYTES", 10_000)
    kv = Replicas()
    big = [b"return %d --" % n + b"x" * 3000 for n in range(4)]  # ~3.1 KB charged each
    for n, one in enumerate(big):
        assert kv(b"EVAL", one, b"0") == n
    assert kv.exists(*big) == [0, 1, 1, 1]


def test_a_body_that_does_not_compile_is_not_cached() -> None:
    kv = Replicas()
    bad = b"return ("
    reply = kv(b"EVAL", bad, b"0")
    assert isinstance(reply, ErrorReply) and "compiling" in reply.text
    too_big = b"return 1 --" + b"x" * (64 * 1024)
    assert isinstance(kv(b"EVAL", too_big, b"0"), ErrorReply)
    assert kv.exists(bad, too_big) == [0, 0]
    assert kv.one.snapshot_state().scripts == {}


def test_eval_ro_does_not_change_the_cache() -> None:
    kv = Replicas()
    assert kv.one.read([b"EVAL_RO", b"return 7", b"0"]) == 7
    assert kv.exists(b"return 7") == [0]


def test_script_load_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script_cache, "LOADED_BYTES", 10_000)
    kv = Replicas()
    big = [b"return %d --" % n + b"x" * 3000 for n in range(4)]
    assert [kv(b"SCRIPT", b"LOAD", one) for one in big[:3]] == [script_sha(x) for x in big[:3]]
    assert kv(b"SCRIPT", b"LOAD", big[3]) == LOAD_OVER
    assert LOAD_OVER.text.startswith("ERR SCRIPT LOAD refused")
    assert kv(b"SCRIPT", b"LOAD", big[0]) == script_sha(big[0])  # loading again is free
    assert kv.exists(*big) == [1, 1, 1, 0]
    # EVAL still caches (its own bound), and SCRIPT FLUSH frees both
    assert kv(b"EVAL", big[3], b"0") == 3
    assert kv(b"SCRIPT", b"FLUSH") is not None
    assert kv.exists(*big) == [0, 0, 0, 0]
    assert kv(b"SCRIPT", b"LOAD", big[3]) == script_sha(big[3])


@pytest.mark.usefixtures("small_cache")
def test_script_load_of_an_eval_cached_body_makes_it_never_evicted() -> None:
    kv = Replicas()
    kv(b"EVAL", body(0), b"0")
    assert kv(b"SCRIPT", b"LOAD", body(0)) == script_sha(body(0))
    for n in range(1, SMALL + 2):
        kv(b"EVAL", body(n), b"0")
    assert kv.exists(body(0), body(1), body(2)) == [1, 0, 1]


@pytest.mark.usefixtures("small_cache")
def test_the_cache_and_its_eviction_order_survive_a_snapshot() -> None:
    kv = Replicas()
    kv(b"SCRIPT", b"LOAD", b"return 'loaded'")
    for n in range(SMALL):
        kv(b"EVAL", body(n), b"0")
    kv(b"EVALSHA", script_sha(body(0)), b"0")  # LRU order now differs from sha and insertion
    blob = kv.one.snapshot()
    state = decode_snapshot(blob)
    assert state.eval_order[0] == script_sha(body(1))
    assert state.eval_order[-1] == script_sha(body(0))
    assert encode_snapshot(state) == blob
    without_feed = decode_snapshot(encode_snapshot(kv.one.snapshot_state(with_feed=False)))
    assert without_feed.feed is None and without_feed.eval_order == state.eval_order
    restored = Replicas()
    restored.one.restore(blob)
    restored.two.restore(blob)
    assert restored.one == kv.one and restored.one.digest() == kv.one.digest()
    for replicas in (kv, restored):
        replicas(b"EVAL", body(SMALL), b"0")
        assert replicas.exists(body(0), body(1), body(2), b"return 'loaded'") == [1, 0, 1, 1]
    assert restored.one == kv.one


@pytest.mark.usefixtures("small_cache")
def test_a_snapshot_without_eval_order_keeps_every_script_as_loaded() -> None:
    kv = KVStateMachine()
    state = kv.snapshot_state()
    state.scripts = {script_sha(body(n)): body(n) for n in range(3)}
    blob = encode_snapshot(state)  # no EVAL order: written as an earlier version
    assert decode_snapshot(blob).eval_order == []
    kv.restore(blob)
    for n in range(3, SMALL + 4):
        kv.apply(encode_entry([b"EVAL", body(n), b"0"], T0))
    reply = kv.apply(encode_entry([b"SCRIPT", b"EXISTS", script_sha(body(0)),
                                   script_sha(body(3))], T0))
    assert reply == [1, 0]


def test_a_hostile_eval_order_is_refused() -> None:
    state = KVStateMachine().snapshot_state()
    state.scripts = {script_sha(body(0)): body(0)}
    for order in ([b"f" * 40], [script_sha(body(0))] * 2):
        state.eval_order = order
        with pytest.raises(Exception, match="EVAL-cached"):
            decode_snapshot(encode_snapshot(state))
