"""attack16: ``TransactionLost`` says "start it again", but starting again is refused.

The connection holding a MULTI dies while a queued SET is in flight: the SET is
``TransactionLost`` ("... discarded the transaction (nothing of it was applied): start it
again"). The caller does just that and sends ``MULTI``: the client still holds the lost
transaction (only EXEC, DISCARD, RESET or UNWATCH end it), so MULTI raises
``TransactionLost`` again, unsent, and so does every retry: the natural loop
``while True: try: MULTI ... EXEC; break except TransactionLost: continue`` spins for
ever, and the client's other tasks wait out their deadlines meanwhile."""

from __future__ import annotations

import pytest
import trio
from fake_node import CLOSE, FakeNode

from client import TransactionLost, connect


async def test_a_new_multi_after_a_lost_transaction_is_sent(nursery: trio.Nursery) -> None:
    node = FakeNode([b"+OK\r\n", CLOSE])  # MULTI answered; the connection dies on SET
    async with connect([await node.serve(nursery)], timeout=5.0, backoff_base=0.001,
                       backoff_cap=0.002, sessions=False) as kv:
        await kv.execute("MULTI")
        with pytest.raises(TransactionLost):
            await kv.execute("SET", "k", "v")
        for _ in range(3):  # start it again, as the error says
            try:
                await kv.execute("MULTI")
                break
            except TransactionLost:
                continue
    assert len(node.commands(b"MULTI")) == 2, node.seen
