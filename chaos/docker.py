"""The docker backend: faults on the containers of the compose cluster.

Documented, not run here (it needs a Docker engine). Nodes are the compose services
node1..N (found by compose's labels, in one project if --project is given); the suite runs
where it can reach their client ports (on the host through the published ports, or in the
compose network as docker-compose.yml's ``chaos`` service does) and where the ``docker`` CLI
can reach the engine. The network to disconnect from is the nodes' own (asked of the engine
unless --docker-network names it). Faults are docker commands:

- kill -9 / restart: ``docker kill --signal KILL C`` / ``docker start C``
- pause: ``docker pause C`` / ``docker unpause C`` (the cgroup freezer, like SIGSTOP)
- partitions: ``docker network disconnect --force NET C`` and, to heal,
  ``docker network connect --alias SERVICE NET C`` (the alias restores the service's DNS
  name, which peers dial). With ``reconnect="plain"`` the heal is the original RaftKV's
  partition-test.sh's bare ``docker network connect NET C``: the container comes back at a
  new address *without* its service name, so peers can only reach it through the
  connections it dials itself (issue 20's failure).

The engine is the ``docker`` argument: ``docker`` or ``podman`` (same commands, and
podman-compose writes the same ``com.docker.compose.*`` labels).

A disconnected container loses every link at once, so only clean partitions can be made
(isolate a node, a majority/minority split: the minority's nodes are each cut off); a
bridge, one-way loss and latency are not available. Commands go through ``runner`` so a
dry run can list them without an engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

import trio

from chaos.nemesis import Unsupported, partition_links
from chaos.workload import Addr, find_leader

Link = tuple[int, int]
Runner = Callable[[list[str]], Awaitable[str]]


async def run_docker(argv: list[str]) -> str:
    """Run one docker command; its stdout (raises on failure with docker's message)."""
    result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                    check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.decode().strip()}")
    return result.stdout.decode()


class DryRun:
    """A runner that records the commands and answers ``docker ps`` with a made-up id."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    async def __call__(self, argv: list[str]) -> str:
        self.commands.append(argv)
        if argv[1:2] == ["ps"]:
            service = next(a.rsplit("=", 1)[1] for a in argv
                           if a.startswith("label=com.docker.compose.service="))
            return f"{service}-container\n"
        if argv[1:2] == ["inspect"]:
            return "raftkv_default \n"
        return ""


def components(nodes: Iterable[int], links: Iterable[Link]) -> list[list[int]]:
    """Groups of nodes still connected when ``links`` are cut (a link cut either way cuts)."""
    cut = set(links)
    todo = sorted(nodes)
    groups: list[list[int]] = []
    while todo:
        group, frontier = {todo[0]}, [todo[0]]
        while frontier:
            a = frontier.pop()
            for b in todo:
                if b not in group and (a, b) not in cut and (b, a) not in cut:
                    group.add(b)
                    frontier.append(b)
        groups.append(sorted(group))
        todo = [n for n in todo if n not in group]
    return groups


class DockerBackend:
    """Both the ``Control`` (containers) and the ``Net`` (the compose network) of a run."""

    name = "docker"
    kinds = frozenset({"kill", "kill-leader", "pause", "isolate-leader", "isolate-follower",
                       "split"})

    def __init__(self, endpoints: Mapping[int, Addr], project: str | None = None,
                 network: str | None = None, services: Mapping[int, str] | None = None,
                 runner: Runner = run_docker, docker: str = "docker",
                 reconnect: str = "alias") -> None:
        if reconnect not in ("alias", "plain"):
            raise ValueError(f"reconnect must be alias or plain, not {reconnect!r}")
        self.endpoints = dict(endpoints)
        self.node_ids = sorted(self.endpoints)
        self.project = project
        self.network = network
        self.services = dict(services or {i: f"node{i}" for i in self.node_ids})
        self.runner = runner
        self.docker = docker
        self.reconnect = reconnect
        self._containers: dict[int, str] = {}
        self._disconnected: set[int] = set()

    async def container(self, node: int) -> str:
        """The container of ``node``'s service, found by compose's labels (v1 and v2 agree)."""
        if node not in self._containers:
            project = ([] if not self.project else
                       ["--filter", f"label=com.docker.compose.project={self.project}"])
            out = await self.runner([
                self.docker, "ps", "--all", "--quiet", *project,
                "--filter", f"label=com.docker.compose.service={self.services[node]}"])
            ids = out.split()
            if len(ids) != 1:
                where = f" of project {self.project!r}" if self.project else ""
                raise RuntimeError(f"expected one container for service "
                                   f"{self.services[node]!r}{where}, found {len(ids)} "
                                   f"(name the project with --project)")
            self._containers[node] = ids[0]
        return self._containers[node]

    async def network_name(self) -> str:
        """The network the nodes talk on (asked of node 1's container, while connected)."""
        if self.network is None:
            out = await self.runner([
                self.docker, "inspect", "--format",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                await self.container(self.node_ids[0])])
            names = out.split()
            if len(names) != 1:
                raise RuntimeError(f"node 1 is on networks {names}: name the one to cut "
                                   f"with --docker-network")
            self.network = names[0]
        return self.network

    async def _docker(self, *args: str, node: int) -> None:
        await self.runner([self.docker, *args, await self.container(node)])

    # -- Control ----------------------------------------------------------------------------

    async def kill(self, node: int) -> None:
        await self._docker("kill", "--signal", "KILL", node=node)

    async def start(self, node: int) -> None:
        await self._docker("start", node=node)

    async def pause(self, node: int) -> None:
        await self._docker("pause", node=node)

    async def resume(self, node: int) -> None:
        await self._docker("unpause", node=node)

    async def leader(self) -> int | None:
        return await find_leader(self.endpoints)

    # -- Net --------------------------------------------------------------------------------

    async def cut(self, links: Iterable[Link]) -> None:
        links = frozenset(links)
        groups = components(self.node_ids, links)
        if links != partition_links(groups):
            raise Unsupported("docker can only cut whole containers off the network")
        keep = max(groups, key=len)
        want = {n for g in groups if g is not keep for n in g}
        network = await self.network_name()
        for node in sorted(self._disconnected - want):
            await self._connect(node)
        for node in sorted(want - self._disconnected):
            await self._docker("network", "disconnect", "--force", network, node=node)
            self._disconnected.add(node)

    async def _connect(self, node: int) -> None:
        alias = ["--alias", self.services[node]] if self.reconnect == "alias" else []
        await self._docker("network", "connect", *alias, await self.network_name(),
                           node=node)
        self._disconnected.discard(node)

    async def slow(self, links: Iterable[Link], delay: float, jitter: float) -> None:
        raise Unsupported("the docker backend cannot add latency")

    async def heal(self) -> None:
        for node in sorted(self._disconnected):
            await self._connect(node)

    async def close(self) -> None:
        await self.heal()
