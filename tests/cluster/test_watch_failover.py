"""Issue 18's proof with real processes: a watcher attached to the leader, a write burst,
kill -9 of that node in the middle; the watcher resumes on another node and its sequence
is exactly the committed feed under its filter (no gap, no duplicate), holding every
acknowledged write."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chaos.cluster import LocalCluster
from chaos.watch_check import WatchLog, check_watcher, matches
from chaos.watchers import newest_id, read_feed
from client import OutcomeUnknown, connect
from client.feed import Change

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

WRITERS, PER_WRITER, KILL_AFTER = 4, 60, 40


async def test_a_watch_resumes_on_another_node_after_kill_9_mid_burst(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as c:
        leader = await trio.to_thread.run_sync(c.wait_for_leader)
        order = [leader] + [i for i in c.nodes if i != leader]
        eps = [c.nodes[i].client_addr for i in order]
        got: list[Change] = []
        acked: set[tuple[bytes, bytes]] = set()
        enough = trio.Event()
        progress = [trio.Event()]
        start = await newest_id([c.client_addr(leader)])  # what "$" resolves to
        async with connect(eps) as kv, trio.open_nursery() as nursery:
            w = kv.watch("wf:*", start=str(start), block=0.5, attempt_timeout=2.0)

            async def follow() -> None:
                async for change in w:
                    got.append(change)
                    progress[0].set()
                    progress[0] = trio.Event()
                    if len(got) >= KILL_AFTER:
                        enough.set()

            async def writer(t: int) -> None:
                async with connect(eps) as mine:
                    for i in range(PER_WRITER):
                        key, value = f"wf:{t}:{i % 7}".encode(), f"{t}.{i}".encode()
                        try:
                            await mine.set(key, value)
                            acked.add((key, value))
                        except OutcomeUnknown:
                            pass
                        await mine.set(f"other:{t}", str(i))  # outside the filter

            nursery.start_soon(follow)
            async with trio.open_nursery() as writers:
                for t in range(WRITERS):
                    writers.start_soon(writer, t)
                with trio.fail_after(30):
                    await enough.wait()
                assert w.endpoint == eps[0]  # attached to the leader until now
                await trio.to_thread.run_sync(c.kill, leader)  # SIGKILL, mid-burst
            new = await trio.to_thread.run_sync(lambda: c.wait_for_leader(exclude=leader))
            feed = await read_feed(c.client_addr(new))
            wanted = [f.id for f in feed if f.id > start and matches("wf:*", f)]
            with trio.fail_after(20):
                while got[-1].id < wanted[-1]:
                    await progress[0].wait()
            nursery.cancel_scope.cancel()
        assert w.resumes >= 1 and w.endpoint != eps[0]
        verdict = check_watcher(WatchLog("w", "wf:*", start, tuple(got), got[-1].id,
                                         w.resumes, w.rejected), feed)
        assert verdict.ok, verdict.summary
        assert [g.id for g in got] == wanted
        in_feed = {(f.key, f.value) for f in feed}
        assert acked <= in_feed
        assert len(acked) >= WRITERS * PER_WRITER - 8  # a few unknown around the kill at most
