"""``raftkv-cli SUBSCRIBE ch`` prints the confirmation and exits: no message is ever shown
(attack21).

The README says ``raftkv-cli`` "prints like ``redis-cli``", and its quick start is where a
new user tries Pub/Sub. ``redis-cli SUBSCRIBE ch`` stays subscribed ("Reading messages...
(press Ctrl-C to quit)") and prints every message as ``message / ch / payload``. Live:
``raftkv-cli SUBSCRIBE ch`` prints ``subscribe / ch / 1`` and exits 0 at once, so a
``PUBLISH ch hello`` from another terminal answers ``0`` (no subscriber) and nothing is
shown. In ``--mode=interactive`` the REPL's connection is left in subscribed mode: the
messages are never printed, and every later command answers ``ERR Can't execute 'get':
only (P|S)SUBSCRIBE / ... are allowed in this context`` until the user happens to type
``UNSUBSCRIBE`` (``help SUBSCRIBE``: "no help for 'SUBSCRIBE'").

Right (one-shot): stay subscribed and print each message until interrupted, as redis-cli
does (or refuse ``SUBSCRIBE`` with a line saying to use redis-cli; this test asks for the
former, what the README promises).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def one_node(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, nodes=1, fsync="never") as c:
        c.wait_for_leader()
        yield c


def _subscribers(addr: str, channel: str) -> int:
    reply = call(addr, "PUBSUB", "NUMSUB", channel, timeout=5.0)
    assert isinstance(reply, list), reply
    return int(reply[1])


def test_one_shot_subscribe_stays_and_prints_messages(one_node: LocalCluster) -> None:
    addr = one_node.nodes[1].client_addr
    cli = subprocess.Popen([sys.executable, "-m", "client", "--endpoints", addr,
                            "SUBSCRIBE", "news"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while _subscribers(addr, "news") == 0:
            assert cli.poll() is None, f"raftkv-cli exited ({cli.returncode}) unsubscribed"
            assert time.monotonic() < deadline, "raftkv-cli never subscribed"
            time.sleep(0.05)  # another process's progress: nothing to wait on

        lines: list[str] = []
        shown = threading.Event()

        def read() -> None:
            assert cli.stdout is not None
            for line in cli.stdout:
                lines.append(line)
                if "hello-subscriber" in line:
                    shown.set()

        threading.Thread(target=read, daemon=True).start()
        assert call(addr, "PUBLISH", "news", "hello-subscriber", timeout=10.0) == 1
        # Printed as it arrives (a subscriber's output is read live, as redis-cli's is).
        assert shown.wait(timeout=30), "".join(lines)
    finally:
        cli.terminate()
        cli.wait(timeout=30)
