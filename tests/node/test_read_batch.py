"""Reads a node takes between two passes of its ready loop are asked of the core as one
ReadIndex (``raftkv.node.requests.ReadBatch``, issue 15): one context and one waiter for the
batch, each read still answered with its own value, and the batch still under the sweep
and ``fail_all`` before the loop has asked it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.node.pending import Pending
from raftkv.node.requests import READ_FAILED, SHUTTING_DOWN, RequestTracker
from raftkv.testing import one_node_leader


async def test_reads_taken_in_one_pass_share_one_read_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with one_node_leader(tmp_path / "data", *free_ports(2), fsync="never") as node:
        with trio.fail_after(20):
            for i in range(3):
                assert await node.submit([b"SET", b"k%d" % i, b"v%d" % i]).wait() is not None
            asked: list[bytes] = []
            read_index = node.core.read_index

            def counted(ctx: bytes) -> None:
                asked.append(ctx)
                read_index(ctx)

            monkeypatch.setattr(node.core, "read_index", counted)
            # No checkpoint between them: the ready loop runs once all are taken.
            pendings = [node.submit([b"GET", b"k%d" % (i % 3)]) for i in range(10)]
            values = [await p.wait() for p in pendings]
        assert values == [b"v%d" % (i % 3) for i in range(10)]
        assert len(asked) == 1
        assert node.stats["reads"] >= 10 and not node.requests.reads


def test_a_batch_not_yet_asked_is_swept_at_its_first_deadline() -> None:
    requests = RequestTracker({"proposals_failed": 0})
    first, second = Pending(), Pending()
    assert requests.add_read([b"GET", b"a"], first, 10.0, 5.0)
    assert not requests.add_read([b"GET", b"b"], second, 10.5, 5.5)  # joins the batch
    requests.sweep(9.9)
    assert not first.done and not second.done
    requests.sweep(10.0)
    assert first.value is READ_FAILED and second.value is READ_FAILED
    assert requests.take_read_batch() is None


def test_fail_all_answers_a_batch_not_yet_asked() -> None:
    requests = RequestTracker({"proposals_failed": 0})
    pending = Pending()
    requests.add_read([b"GET", b"a"], pending, 10.0, 5.0)
    requests.fail_all(SHUTTING_DOWN)
    assert pending.value is SHUTTING_DOWN
    assert requests.take_read_batch() is None
