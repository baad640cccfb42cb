"""``Node.barrier``: the linearizable point a feed read after writes (client_port's
``_applied_barrier``) and ``RAFT BACKUP`` wait for. It was a ``DBSIZE``, which walks every
key with a deadline (16 ms on 1M of them, harden11); now a read that walks no key."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.testing import one_node_leader


async def test_the_barrier_walks_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    async with one_node_leader(tmp_path / "data", *free_ports(2), fsync="never") as node:
        with trio.fail_after(20):
            assert await node.submit([b"SET", b"k", b"v", b"EX", b"100"]).wait() is not None
            walked: list[str] = []

            class Watched(dict):  # the deadlines, noting a walk over them
                def values(self):  # type: ignore[override]
                    walked.append("values")
                    return super().values()

            monkeypatch.setattr(node.kv, "_expires", Watched(node.kv._expires))
            applied = node.applier.applied
            assert await node.barrier().wait() == 0
        assert walked == []
        assert node.applier.applied >= applied
