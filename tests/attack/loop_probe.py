"""How long a node keeps another client waiting while one heavy request runs: the attack
tests' probe of a stalled event loop (real processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis


def worst_ping_while(host: str, port: int, request: Callable[[], object],
                     timeout: float = 10.0) -> float:
    """Run ``request`` in a thread (its redis errors ignored: the probe is the subject) and
    PING the node on a connection of its own every 50 ms until it returns; the longest a
    PING waited, or infinity if one got no answer within ``timeout`` seconds."""
    done = threading.Event()

    def run() -> None:
        try:
            request()
        except redis.RedisError:
            pass
        finally:
            done.set()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    ping = redis.Redis(host=host, port=port, socket_timeout=timeout)
    worst = 0.0
    try:
        while not done.is_set():
            started = time.monotonic()
            try:
                ping.ping()
            except redis.TimeoutError:
                return float("inf")
            worst = max(worst, time.monotonic() - started)
            done.wait(0.05)
    finally:
        worker.join(60)
    return worst
