"""``HELLO 3`` typed in raftkv-cli (session 11).

Before: the node switched the connection to RESP3 and answered a map, which this client's
RESP2 parser refused: the REPL printed an UNKNOWN-outcome error and the client dropped the
connection and opened another. Now the CLI refuses ``HELLO 3`` itself, saying why, sends
nothing and keeps its connection (the same ``CLIENT ID`` after it); ``HELLO 2`` still
answers the HELLO reply."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)
CLI = str(Path(sys.executable).parent / "raftkv-cli")
REFUSED = ("ERR raftkv-cli speaks RESP2 only: HELLO 3 would switch this connection "
           "to RESP3, which it does not read; nothing was sent. Use HELLO 2 (or HELLO) here, "
           "or redis-cli -3")


def test_hello_3_is_refused_without_dropping_the_connection(cluster: LocalCluster) -> None:
    endpoint = cluster.nodes[cluster.wait_for_leader()].client_addr
    script = "client id\nhello 3\nclient id\nhello 3 auth default x\nhello 2\n"
    done = subprocess.run([CLI, "-e", endpoint], input=script.encode(), capture_output=True,
                          timeout=60)
    lines = [line for line in done.stdout.decode().splitlines() if line]  # (raw output)
    first_id, refused, second_id, refused_again, *hello = lines
    assert refused == refused_again == REFUSED, lines
    assert first_id == second_id, f"the connection was dropped: {lines}"
    assert hello[hello.index("proto") + 1] == "2", lines
    assert done.returncode == 1  # a scripted session: the worst status seen (an error)


def test_one_shot_hello_3_is_refused(cluster: LocalCluster) -> None:
    endpoint = cluster.nodes[cluster.wait_for_leader()].client_addr
    done = subprocess.run([CLI, "-e", endpoint, "HELLO", "3"], capture_output=True,
                          timeout=60)
    assert done.returncode == 1 and done.stdout.decode().strip() == REFUSED, done
