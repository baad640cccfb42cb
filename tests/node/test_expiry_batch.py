"""The leader's active expiry (raftkv.node.expiry) against --max-request-bytes, on trio's
MockClock: a batch of due keys whose names add up past the bound must not wedge expiry.

attack10, live: two keys with 4.5 MiB names and one deadline made every ``EXPIRED`` batch
9 MB, which the node refuses before proposing; expiry tried the same batch every 100 ms,
and no key with a TTL was deleted again (52 keys past their deadline stayed on all three
replicas, ``INFO keyspace``).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio
import trio.testing

from raftkv.kv import KVStateMachine, encode_entry
from raftkv.node.expiry import BATCH, active_expiry, fitting
from raftkv.node.pending import Pending
from raftkv.node.sizes import request_size
from raftkv.raft import Role
from wire.reply import ErrorReply

T0 = 1_700_000_000_000
LIMIT = 64 * 1024  # --max-request-bytes of this test's leader


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _leader_with(keys: list[bytes], limit: int = LIMIT,
                 ) -> tuple[KVStateMachine, list[list[bytes]], object]:
    """A state holding ``keys`` all due at T0 + 10, and a ``submit`` that refuses an
    oversized command as ``Node.check`` does and otherwise applies it at T0 + 20."""
    kv = KVStateMachine()
    for key in keys:
        kv.apply(encode_entry([b"SET", key, b"v", b"PXAT", b"%d" % (T0 + 10)], T0))
    sent: list[list[bytes]] = []

    def submit(args: list[bytes]) -> Pending:
        sent.append(args)
        if request_size(args) > limit:
            return Pending.of(ErrorReply("ERR request exceeds max-request-bytes"))
        return Pending.of(kv.apply(encode_entry(args, T0 + 20)))

    return kv, sent, submit


async def _expire(kv: KVStateMachine, submit: object, limit: int = LIMIT) -> None:
    core = SimpleNamespace(role=Role.LEADER)
    clock = SimpleNamespace(now=lambda: T0 + 20)
    with trio.move_on_after(5):  # (virtual seconds: 50 expiry periods)
        await active_expiry(core, kv, clock, submit, limit)  # type: ignore[arg-type]


async def test_due_keys_whose_names_exceed_the_request_bound_together_all_expire(
        autojump_clock) -> None:
    long = [bytes([65 + i]) * (LIMIT // 2) for i in range(3)]  # any two: over the bound
    small = [b"small%d" % i for i in range(50)]
    kv, sent, submit = _leader_with(long + small)
    await _expire(kv, submit)
    assert len(kv) == 0
    assert all(request_size(args) <= LIMIT for args in sent)


async def test_more_than_a_batch_of_due_keys_in_bytes_goes_in_several_batches(
        autojump_clock) -> None:
    keys = [b"%05d" % i + b"k" * 1000 for i in range(300)]  # 300 KB: five batches or so
    kv, sent, submit = _leader_with(keys)
    await _expire(kv, submit)
    assert len(kv) == 0
    assert len(sent) >= 5
    assert all(request_size(args) <= LIMIT for args in sent)


async def test_a_key_too_long_to_go_alone_does_not_hold_back_the_others(
        autojump_clock) -> None:
    too_long = b"x" * LIMIT  # (a script may write a key name up to 8 MiB)
    kv, sent, submit = _leader_with([too_long, b"a", b"b"])
    await _expire(kv, submit)
    assert len(kv) == 1  # the long one, hidden from reads as it is past its deadline
    assert all(too_long not in args for args in sent)
    assert sorted(k for args in sent for k in args[1:]) == [b"a", b"b"]


async def test_a_batch_of_keys_too_long_to_go_alone_does_not_stop_expiry(
        autojump_clock) -> None:
    """attack11: the keys too long to go alone stayed candidates at the head of the heap,
    so a whole BATCH (500) of them, due first, filled every batch: each came out empty and
    no other key was deleted again (a script may write 500 such names)."""
    limit = 1024
    too_long = [b"A%03d" % i + b"x" * limit for i in range(BATCH)]
    kv, sent, submit = _leader_with([*too_long, b"small1", b"small2"], limit)
    await _expire(kv, submit, limit)
    assert len(kv) == BATCH  # only the long ones, hidden from reads past their deadline
    assert sorted(k for args in sent for k in args[1:]) == [b"small1", b"small2"]


def test_fitting_takes_a_prefix_within_the_bound() -> None:
    keys = [b"k" * 100] * 10
    batch, cut = fitting(keys, request_size([b"EXPIRED", *keys[:4]]))
    assert batch == [b"EXPIRED", *keys[:4]] and cut
    batch, cut = fitting(keys, LIMIT)
    assert batch == [b"EXPIRED", *keys] and not cut
