"""The nftables backend: kernel-level partitions, in a private network namespace.

``raftkv-chaos run --net nft`` re-executes itself under ``unshare -n`` (root only), brings
up ``lo`` there, and runs every node inside that namespace, so the rules can never touch
the host's network and vanish with the namespace even if the suite is killed.

Addressing: node i listens on 127.0.0.i (client port 7001, peer port 7101). The peer
transport dials without a source address, and a connection to 127.0.0.j from an unbound
socket leaves from 127.0.0.1 whoever dials, so neither source address nor source port says
which node sent a packet. Instead each *directed link* gets its own destination port: node
i's --cluster list names j as 127.0.0.j:LINK(i, j), and a NAT rule in the output hook
rewrites that port to 7101. Conntrack remembers the original port, so a filter rule in the
input hook matching ``ct original proto-dst LINK(i, j)`` drops every packet of node i's
connection to node j, in both directions, silently (the sender sees no error, only
silence; a new connect times out): a real partition as TCP sees it. Only peer traffic is
cut; clients reach every node, as Jepsen's control node does.

nftables cannot delay packets, so the latency nemesis is not available here.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterable, Sequence

import trio

from chaos.nemesis import KINDS, Unsupported

Link = tuple[int, int]
TABLE = "raftkv_chaos"
CLIENT_PORT = 7001
PEER_PORT = 7101
LINK_PORT_BASE = 7200
NETNS_ENV = "RAFTKV_CHAOS_NETNS"


class NftError(RuntimeError):
    """nft is missing, or refused a ruleset (the message says which and why)."""


def host(node: int) -> str:
    return f"127.0.0.{node}"


def link_port(src: int, dst: int) -> int:
    """The destination port node ``src`` dials to reach ``dst`` (nodes 1..9)."""
    return LINK_PORT_BASE + 10 * src + dst


def require_nft() -> str:
    path = shutil.which("nft")
    if path is None:
        raise NftError("--net nft needs the nft command (Debian/Ubuntu: apt-get install "
                       "nftables); or use --net proxy, which needs no privileges")
    return path


class NftNet:
    """Partitions as nftables rules in table ``inet raftkv_chaos``."""

    name = "nft"
    kinds = frozenset(KINDS) - {"latency"}

    def __init__(self, nodes: Sequence[int], nft: str = "nft") -> None:
        if any(not 1 <= n <= 9 for n in nodes):
            raise ValueError("the nft backend numbers nodes 1..9")
        self.nodes = list(nodes)
        self.nft = nft

    def peer_map(self, node: int) -> dict[int, str]:
        return {j: f"{host(j)}:{link_port(node, j)}" for j in self.nodes if j != node}

    def setup_ruleset(self) -> str:
        """The table: per-link port rewriting, and an empty chain for the cuts."""
        dnat = "\n".join(
            f"    ip daddr {host(j)} tcp dport {link_port(i, j)} dnat ip to {host(j)}:{PEER_PORT}"
            for i in self.nodes for j in self.nodes if i != j)
        return (f"table inet {TABLE} {{\n"
                f"  chain links {{\n    type nat hook output priority -100; policy accept;\n"
                f"{dnat}\n  }}\n"
                f"  chain cut {{\n    type filter hook input priority 0; policy accept;\n  }}\n"
                f"}}\n")

    def cut_ruleset(self, links: Iterable[Link]) -> str:
        """Replace the cuts with exactly ``links``."""
        ports = sorted(link_port(i, j) for i, j in links)
        text = f"flush chain inet {TABLE} cut\n"
        if ports:
            text += (f"add rule inet {TABLE} cut meta l4proto tcp ct original proto-dst "
                     f"{{ {', '.join(map(str, ports))} }} drop\n")
        return text

    def teardown_ruleset(self) -> str:
        return f"delete table inet {TABLE}\n"

    async def _apply(self, text: str) -> None:
        result = await trio.run_process([self.nft, "-f", "-"], stdin=text.encode(),
                                        capture_stdout=True, capture_stderr=True, check=False)
        if result.returncode != 0:
            raise NftError(f"nft refused the rules ({result.stderr.decode().strip()}):\n{text}")

    async def setup(self) -> None:
        await self._apply(self.setup_ruleset())

    async def cut(self, links: Iterable[Link]) -> None:
        await self._apply(self.cut_ruleset(links))

    async def slow(self, links: Iterable[Link], delay: float, jitter: float) -> None:
        raise Unsupported("nftables cannot delay packets: use --net proxy for latency")

    async def heal(self) -> None:
        await self._apply(self.cut_ruleset(()))

    async def close(self) -> None:
        await self._apply(self.teardown_ruleset())


# -- the private network namespace ------------------------------------------------------


def in_private_netns() -> bool:
    return os.environ.get(NETNS_ENV) == "1"


def reexec_in_netns(args: Sequence[str], net: str = "nft") -> int:
    """Run ``raftkv-chaos ARGS`` again inside a new network namespace; its exit status."""
    if net == "nft":
        require_nft()
    if os.geteuid() != 0:
        raise NftError(f"--net {net} needs root (it creates a network namespace and nftables "
                       "rules); run as root or use --net proxy")
    unshare = shutil.which("unshare")
    if unshare is None:
        raise NftError("--net nft needs unshare(1) (util-linux)")
    cmd = [unshare, "--net", "--", sys.executable, "-c", "from chaos.cli import main; main()",
           *args]
    proc = subprocess.Popen(cmd, env={**os.environ, NETNS_ENV: "1"})

    def forward(signum: int, frame: object) -> None:  # the child tears down and exits
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_up_loopback() -> None:
    """``ip link set lo up`` without needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
