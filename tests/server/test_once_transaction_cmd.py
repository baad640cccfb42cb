"""``RAFT ONCE id seq MULTI`` (EXEC, DISCARD, WATCH, UNWATCH) on the client port (session
11): it answered ``ERR unknown command 'MULTI'``, as if MULTI did not exist; it says that
RAFT ONCE cannot wrap it and why, and the connection opens no transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import trio

from chaos.cluster import free_ports
from raftkv.testing import one_node_leader


def _session_then_multi(port: int) -> list[object]:
    r = redis.Redis(port=port, socket_timeout=10, single_connection_client=True)
    try:
        sid = r.execute_command("RAFT", "SESSION", "OPEN")
        seen: list[object] = []
        for seq, words in enumerate((["MULTI"], ["EXEC"], ["WATCH", "k"]), start=1):
            with pytest.raises(redis.ResponseError) as err:
                r.execute_command("RAFT", "ONCE", sid, seq, *words)
            seen.append(str(err.value))
        seen.append(r.execute_command("SET", "after", "1"))  # run at once: no MULTI open
        return seen
    finally:
        r.close()


async def test_raft_once_of_a_transaction_command_says_why(tmp_path: Path) -> None:
    peer, port = free_ports(2)
    async with one_node_leader(tmp_path / "data", peer, port, fsync="never"):
        with trio.fail_after(30):
            seen = await trio.to_thread.run_sync(_session_then_multi, port)
    *errors, after = seen
    for name, text in zip(("MULTI", "EXEC", "WATCH"), errors, strict=True):
        assert text.startswith(f"RAFT ONCE cannot wrap {name}: ") and "transaction" in text
    assert after is True
