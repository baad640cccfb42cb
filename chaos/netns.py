"""The network-namespace backend: partitions that change a node's address, like a container.

``raftkv-chaos run --net netns`` re-executes itself in a private network namespace (as
``--net nft`` does: root, ``unshare -n``), the *hub*, where the suite and its clients run.
Each node runs in a network namespace of its own (``ip netns exec``) with two links:

- ``eth0``, a veth into the hub's bridge, the only way to its peers, at 10.213.GEN.i/16;
  peers dial it by name (``n1:7101``...), resolved from the namespace's own hosts file
  (``/etc/netns/NAME/hosts``, which ``ip netns exec`` mounts over /etc/hosts);
- ``mgmt0``, a point-to-point veth to the hub at 10.214.i.2 for the clients (the hub does
  not forward, so peers can never use it): clients reach every node, as with nft.

Cutting a node off deletes its ``eth0`` (what ``docker network disconnect`` does: packets
to its address vanish, the peers' connections to it go silent). Healing gives it a new
``eth0`` at a NEW address (the next generation GEN) and rewrites every hosts file: exactly
what reconnecting a container does, so links that kept the old address, or never resolve
the name again, stay dead (issue 20). With ``reconnect="plain"`` the node's name is dropped
from the hosts files instead, as a plain ``docker network connect`` (no ``--alias``) drops
the service name: peers can then reach it only through the connections it dials itself.
Like docker, only whole nodes can be cut off (isolate the leader or a follower, a split as
isolated minority nodes); no bridge, no one-way loss, no latency.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import trio

from chaos.cluster import LocalCluster
from chaos.docker import components
from chaos.nemesis import Unsupported, partition_links

Link = tuple[int, int]
CLIENT_PORT = 7001
PEER_PORT = 7101
BRIDGE = "rkvbr0"
HUB_ADDR = "10.213.255.254/16"
NETNS_DIR = Path("/etc/netns")


class NetnsError(RuntimeError):
    """ip is missing or refused a command (the message says which and why)."""


def peer_addr(gen: int, node: int) -> str:
    """Node ``node``'s address on the bridge in generation ``gen`` (each heal: a new one)."""
    return f"10.213.{gen}.{node}"


def client_host(node: int) -> str:
    return f"10.214.{node}.2"


def hosts_text(addrs: dict[int, str]) -> str:
    lines = ["127.0.0.1 localhost"] + [f"{a} n{i}" for i, a in sorted(addrs.items())]
    return "\n".join(lines) + "\n"


def ip(*args: str) -> None:
    """One ``ip`` command; NetnsError with its message on failure."""
    out = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {out.stderr.strip()}")


class NetnsNet:
    """The hub's bridge and one namespace per node; ``cut``/``heal`` as the nemesis's Net."""

    name = "netns"
    kinds = frozenset({"kill", "kill-leader", "pause", "isolate-leader", "isolate-follower",
                       "split"})

    def __init__(self, nodes: Sequence[int], tag: str | None = None,
                 reconnect: str = "alias") -> None:
        if reconnect not in ("alias", "plain"):
            raise ValueError(f"reconnect must be alias or plain, not {reconnect!r}")
        if any(not 1 <= n <= 250 for n in nodes):
            raise ValueError("the netns backend numbers nodes 1..250")
        if shutil.which("ip") is None:
            raise NetnsError("--net netns needs ip(8) (apt-get install iproute2)")
        self.nodes = list(nodes)
        self.tag = tag or f"rkv{os.getpid()}"
        self.gen = {n: 0 for n in self.nodes}
        self.addrs = {n: peer_addr(0, n) for n in self.nodes}
        self._next_gen = 1
        self.reconnect = reconnect
        self._disconnected: set[int] = set()
        self._unnamed: set[int] = set()  # reconnected plainly: no hosts entry any more
        self._made: list[int] = []

    def ns(self, node: int) -> str:
        return f"{self.tag}-n{node}"

    def hosts_file(self, node: int) -> Path:
        return NETNS_DIR / self.ns(node) / "hosts"

    def wrap(self, node: int) -> list[str]:
        """The command prefix that runs a process in ``node``'s namespace."""
        return ["ip", "netns", "exec", self.ns(node)]

    # -- setup and teardown ---------------------------------------------------------------

    def setup(self) -> None:
        """The bridge, and per node its namespace, hosts file, mgmt0 and eth0 (generation 0)."""
        ip("link", "set", "lo", "up")
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", HUB_ADDR, "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for n in self.nodes:
            ns = self.ns(n)
            ip("netns", "add", ns)
            self._made.append(n)
            self.hosts_file(n).parent.mkdir(parents=True, exist_ok=True)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "add", f"{self.tag}m{n}"[:15], "type", "veth", "peer", "name", "mgmt0",
               "netns", ns)
            ip("addr", "add", f"10.214.{n}.1/24", "dev", f"{self.tag}m{n}"[:15])
            ip("link", "set", f"{self.tag}m{n}"[:15], "up")
            ip("-n", ns, "addr", "add", f"{client_host(n)}/24", "dev", "mgmt0")
            ip("-n", ns, "link", "set", "mgmt0", "up")
            self._attach(n)
        self._write_hosts()

    def _hub_veth(self, node: int) -> str:
        return f"{self.tag}e{node}"[:15]

    def _attach(self, node: int) -> None:
        """A fresh eth0 for ``node`` at its current generation's address."""
        ns, hub = self.ns(node), self._hub_veth(node)
        ip("link", "add", hub, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", hub, "master", BRIDGE)
        ip("link", "set", hub, "up")
        ip("-n", ns, "addr", "add", f"{self.addrs[node]}/16", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")

    def _write_hosts(self) -> None:
        # Written in place (same inode): ``ip netns exec`` bind-mounted these very files.
        text = hosts_text({n: a for n, a in self.addrs.items() if n not in self._unnamed})
        for n in self.nodes:
            with open(self.hosts_file(n), "w") as f:
                f.write(text)

    def teardown(self) -> None:
        for n in self._made:
            subprocess.run(["ip", "netns", "del", self.ns(n)], capture_output=True, check=False)
            shutil.rmtree(self.hosts_file(n).parent, ignore_errors=True)
        self._made.clear()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)

    # -- Net ------------------------------------------------------------------------------

    async def cut(self, links: Iterable[Link]) -> None:
        links = frozenset(links)
        groups = components(self.nodes, links)
        if links != partition_links(groups):
            raise Unsupported("netns can only cut whole nodes off the bridge")
        keep = max(groups, key=len)
        want = {n for g in groups if g is not keep for n in g}
        for node in sorted(self._disconnected - want):
            await self._reconnect(node)
        for node in sorted(want - self._disconnected):
            await trio.to_thread.run_sync(ip, "link", "del", self._hub_veth(node))
            self._disconnected.add(node)

    async def _reconnect(self, node: int) -> None:
        """Back on the bridge at a NEW address; every hosts file names it."""
        self.gen[node] = self._next_gen
        self._next_gen += 1
        self.addrs[node] = peer_addr(self.gen[node], node)
        if self.reconnect == "plain":
            self._unnamed.add(node)
        await trio.to_thread.run_sync(self._attach, node)
        await trio.to_thread.run_sync(self._write_hosts)
        self._disconnected.discard(node)

    async def slow(self, links: Iterable[Link], delay: float, jitter: float) -> None:
        raise Unsupported("the netns backend cannot add latency")

    async def heal(self) -> None:
        for node in sorted(self._disconnected):
            await self._reconnect(node)

    async def close(self) -> None:
        await self.heal()


class NetnsCluster(LocalCluster):
    """LocalCluster whose nodes run in their namespaces and dial peers by name."""

    def __init__(self, workdir: Path, net: NetnsNet, **kw: object) -> None:
        nodes = len(net.nodes)
        # Beyond loopback a node refuses to start with unauthenticated peers (protected
        # mode): the namespaced nodes share a secret, as a real deployment would.
        kw.setdefault("peer_secret", True)
        # Their client ports are reachable only from this host's namespaces and the
        # workload does not authenticate: --insecure for the client side's protected mode.
        kw.setdefault("extra_args", ["--insecure"])
        super().__init__(workdir, nodes, hosts=[client_host(n) for n in net.nodes],
                         ports=[(CLIENT_PORT, PEER_PORT)] * nodes, **kw)  # type: ignore[arg-type]
        self.net = net
        for node in self.nodes.values():  # listen on every address eth0 will ever have
            node.peer_addr = f"0.0.0.0:{PEER_PORT}"
            self.node_args.setdefault(node.id, []).extend(
                ["--advertise-peer-addr", f"n{node.id}:{PEER_PORT}"])

    def cluster_arg_for(self, node_id: int) -> str:
        return ",".join(f"{i}=n{i}:{PEER_PORT}" for i in self.nodes)

    def command(self, node):  # type: ignore[no-untyped-def]
        return [*self.net.wrap(node.id), *super().command(node)]
