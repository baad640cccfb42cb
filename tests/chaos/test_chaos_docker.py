"""The docker backend, dry-run: the exact docker commands each fault and heal would run."""

from __future__ import annotations

import pytest

from chaos.docker import DockerBackend, DryRun, components
from chaos.nemesis import Fault, Nemesis, Unsupported, bridge_links, partition_links

ENDPOINTS = {1: ("127.0.0.1", 7001), 2: ("127.0.0.1", 7002), 3: ("127.0.0.1", 7003)}


def backend() -> tuple[DockerBackend, DryRun]:
    runner = DryRun()
    return DockerBackend(ENDPOINTS, project="raftkv", runner=runner), runner


def ps(service: str) -> list[str]:
    return ["docker", "ps", "--all", "--quiet",
            "--filter", "label=com.docker.compose.project=raftkv",
            "--filter", f"label=com.docker.compose.service={service}"]


async def test_kill_restart_pause_resume_commands() -> None:
    b, runner = backend()
    await b.kill(2)
    await b.start(2)
    await b.pause(3)
    await b.resume(3)
    await b.kill(2)  # the container id is looked up once
    assert runner.commands == [
        ps("node2"),
        ["docker", "kill", "--signal", "KILL", "node2-container"],
        ["docker", "start", "node2-container"],
        ps("node3"),
        ["docker", "pause", "node3-container"],
        ["docker", "unpause", "node3-container"],
        ["docker", "kill", "--signal", "KILL", "node2-container"],
    ]


async def test_isolating_a_node_disconnects_it_and_heal_reconnects_with_its_dns_alias() -> None:
    b, runner = backend()
    await b.cut(partition_links([[2], [1, 3]]))
    await b.heal()
    assert runner.commands == [
        ps("node1"),  # the network is the one node 1 is on
        ["docker", "inspect", "--format",
         "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "node1-container"],
        ps("node2"),
        ["docker", "network", "disconnect", "--force", "raftkv_default", "node2-container"],
        ["docker", "network", "connect", "--alias", "node2", "raftkv_default",
         "node2-container"],
    ]
    await b.heal()  # nothing left to heal
    assert len(runner.commands) == 5


async def test_without_a_project_any_compose_project_matches() -> None:
    runner = DryRun()
    b = DockerBackend(ENDPOINTS, runner=runner, network="given_net")
    await b.cut(partition_links([[3], [1, 2]]))
    assert runner.commands == [
        ["docker", "ps", "--all", "--quiet", "--filter",
         "label=com.docker.compose.service=node3"],
        ["docker", "network", "disconnect", "--force", "given_net", "node3-container"],
    ]


async def test_a_new_cut_reconnects_the_nodes_it_no_longer_isolates() -> None:
    b, runner = backend()
    await b.cut(partition_links([[1], [2, 3]]))
    await b.cut(partition_links([[3], [1, 2]]))
    assert [c[1:3] + c[-1:] for c in runner.commands if c[1] == "network"] == [
        ["network", "disconnect", "node1-container"],
        ["network", "connect", "node1-container"],
        ["network", "disconnect", "node3-container"],
    ]


async def test_a_five_node_split_disconnects_each_minority_node() -> None:
    runner = DryRun()
    b = DockerBackend({i: ("h", 7000 + i) for i in range(1, 6)}, project="p",
                      network="p_net", runner=runner)
    await b.cut(partition_links([[2, 4], [1, 3, 5]]))
    assert [c for c in runner.commands if c[1] == "network"] == [
        ["docker", "network", "disconnect", "--force", "p_net", "node2-container"],
        ["docker", "network", "disconnect", "--force", "p_net", "node4-container"],
    ]


async def test_bridges_and_one_way_cuts_are_not_possible() -> None:
    b, runner = backend()
    with pytest.raises(Unsupported):
        await b.cut(bridge_links([1], [3]))
    with pytest.raises(Unsupported):
        await b.cut({(1, 2)})
    with pytest.raises(Unsupported):
        await b.slow({(1, 2)}, 0.1, 0.0)
    assert runner.commands == []
    assert b.kinds == {"kill", "kill-leader", "pause", "isolate-leader", "isolate-follower",
                       "split"}


def test_components() -> None:
    assert components([1, 2, 3], partition_links([[2], [1, 3]])) == [[1, 3], [2]]
    assert components([1, 2, 3], bridge_links([1], [3])) == [[1, 2, 3]]
    assert components([1, 2, 3], ()) == [[1, 2, 3]]


async def test_a_nemesis_split_on_docker(autojump_clock: object) -> None:
    b, runner = backend()
    nemesis = Nemesis(b, b)
    desc, (minority,) = await nemesis.inject(Fault("split", 0.0, 1.0, seed=4))
    await nemesis.heal()
    name = f"node{minority}-container"
    assert [c for c in runner.commands if c[1] == "network"] == [
        ["docker", "network", "disconnect", "--force", "raftkv_default", name],
        ["docker", "network", "connect", "--alias", f"node{minority}", "raftkv_default", name],
    ]
    assert desc.startswith(f"split {{n{minority}}}")


async def test_a_plain_reconnect_is_the_originals_bare_network_connect() -> None:
    runner = DryRun()
    b = DockerBackend(ENDPOINTS, network="net", runner=runner, docker="podman",
                      reconnect="plain")
    await b.cut(partition_links([[2], [1, 3]]))
    await b.heal()
    assert [c for c in runner.commands if c[1] == "network"] == [
        ["podman", "network", "disconnect", "--force", "net", "node2-container"],
        ["podman", "network", "connect", "net", "node2-container"],
    ]
    with pytest.raises(ValueError):
        DockerBackend(ENDPOINTS, reconnect="sometimes")
