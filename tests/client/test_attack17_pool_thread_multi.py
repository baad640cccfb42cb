"""attack17: a thread pool's worker carries one job's open MULTI into the next job, whose
``SET`` is queued in it and told ``True``.

attack16 made the holder of an open WATCH/MULTI a ``SyncClient`` caller's Thread object
(thread idents are reused). But a thread pool (``concurrent.futures``, a threaded web
server) runs unrelated jobs on one Thread object: a job that raises between ``MULTI`` and
``EXEC`` leaves the MULTI open, and the next job on that worker is "the same caller". Its
``kv.set(...)`` goes into the abandoned MULTI, the node answers ``+QUEUED``, and
``set_result`` reads any simple string as success: ``True`` ("set"), for a write that is
never applied (no EXEC will come). redis-py's ``set`` reads ``QUEUED`` as False, since
only ``OK`` is success."""

from __future__ import annotations

import contextlib
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import trio
from fake_node import FakeNode

from client import RaftKVError, SyncClient


def _serve(node: FakeNode, addr: queue.Queue[str], stop: threading.Event) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            addr.put(await node.serve(nursery))
            await trio.to_thread.run_sync(stop.wait)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_pool_worker_s_next_job_is_not_told_its_set_was_applied() -> None:
    node = FakeNode([b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"])
    addr: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(node, addr, stop), daemon=True)
    server.start()
    try:
        with SyncClient([addr.get(timeout=10)], timeout=2.0, sessions=False) as kv, \
                ThreadPoolExecutor(max_workers=1) as pool:

            def job_that_fails() -> None:
                kv.execute("MULTI")
                kv.set("a", "1")
                raise RuntimeError("a bug before EXEC")

            with contextlib.suppress(RuntimeError):
                pool.submit(job_that_fails).result()
            try:
                told = pool.submit(kv.set, "b", "2").result()  # another job, same worker
            except RaftKVError as exc:
                told = exc
    finally:
        stop.set()
        server.join(timeout=10)
    assert [c[0] for c in node.seen] != [b"MULTI", b"SET", b"SET"] or told is not True, (
        "the next job's SET went into the abandoned MULTI and was told True")
