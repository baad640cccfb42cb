"""The network-namespace backend: a node cut off comes back at a NEW address (issue 20).

The real tests run as root (CI and these machines are): they create namespaces named after
the test process and remove them, whatever happens.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from chaos.nemesis import Unsupported, bridge_links, partition_links
from chaos.netns import NetnsNet, hosts_text, peer_addr

ROOT = Path(__file__).resolve().parents[2]


def test_each_heal_is_a_new_generation_of_addresses() -> None:
    assert peer_addr(0, 2) == "10.213.0.2"
    assert peer_addr(3, 2) == "10.213.3.2"
    assert hosts_text({1: "10.213.0.1", 2: "10.213.4.2"}).splitlines() == [
        "127.0.0.1 localhost", "10.213.0.1 n1", "10.213.4.2 n2"]


async def test_only_whole_nodes_can_be_cut_off() -> None:
    net = NetnsNet([1, 2, 3], tag="rkvunit")
    with pytest.raises(Unsupported):
        await net.cut(bridge_links([1], [3]))
    with pytest.raises(Unsupported):
        await net.cut({(1, 2)})
    with pytest.raises(Unsupported):
        await net.slow({(1, 2)}, 0.1, 0.0)


# Node 1 dials node 2 by name from inside its namespace: before the cut, during it, after
# the heal (a new address, the name follows it), and after a plain heal (no name).
PROBE = """
import socket, sys
try:
    addr = socket.gethostbyname("n2")
    socket.create_connection((addr, 7101), timeout=1).close()
    print(addr)
except OSError as exc:
    print(type(exc).__name__)
"""


def probe(net: NetnsNet) -> str:
    out = subprocess.run([*net.wrap(1), sys.executable, "-c", PROBE], capture_output=True,
                         text=True, timeout=30)
    return out.stdout.strip() or out.stderr


def test_cut_removes_the_link_and_heal_brings_the_node_back_at_a_new_address() -> None:
    net = NetnsNet([1, 2], tag=f"rkvt{__import__('os').getpid()}")
    server = None
    try:
        net.setup()
        server = subprocess.Popen([*net.wrap(2), sys.executable, "-c",
                                   "import socket, time; s = socket.create_server(('0.0.0.0', "
                                   "7101)); print('up', flush=True); time.sleep(60)"],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline() == "up\n"
        assert probe(net) == "10.213.0.2"
        trio.run(net.cut, partition_links([[1], [2]]))
        assert probe(net) in ("TimeoutError", "OSError")  # the old address is gone
        trio.run(net.heal)
        assert probe(net) == "10.213.1.2"  # a NEW address, and the name follows it
        net.reconnect = "plain"
        trio.run(net.cut, partition_links([[1], [2]]))
        trio.run(net.heal)
        assert probe(net) == "gaierror"  # back at 10.213.2.2, but no name any more
        assert net.addrs[2] == "10.213.2.2"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        net.teardown()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert net.tag not in listed


@pytest.mark.slow
def test_a_leader_cut_off_and_reconnected_at_a_new_address_comes_back(tmp_path: Path) -> None:
    """The original partition test without containers: the leader is cut off, comes back at
    a new address without its name (as `docker network connect` does), and must serve again.
    Fails until the transport answers a peer it can only reach through that peer's own link.
    """
    out = subprocess.run(
        [sys.executable, "-c", "from chaos.cli import main; main()", "partition",
         "--net", "netns", "--reconnect", "plain", "--target", "leader", "--before", "2",
         "--delay", "2", "--after", "6", "--clients", "4", "--seed", "20",
         "--out", str(tmp_path), "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=110)
    report = out.stdout[out.stdout.find("partition:"):]
    assert out.returncode == 0, report + out.stderr[-2000:]
    assert "served again" in report
