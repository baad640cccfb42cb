"""Dockerfile and docker-compose.yml agree with `raftkv serve` and with each other.

No Docker engine is needed: the files are parsed and checked against serve's click options,
and docker-compose's own ``config`` validates the compose file (CI installs docker-compose).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import yaml

from raftkv.cli import serve
from raftkv.node.settings import parse_addr, parse_cluster

ROOT = Path(__file__).resolve().parent.parent
NODES = ("node1", "node2", "node3")


def serve_envvars() -> dict[str, click.Parameter]:
    return {p.envvar: p for p in serve.params if isinstance(p.envvar, str)}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, buf = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if not buf and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        buf += raw
        word, _, rest = buf.strip().partition(" ")
        lines.append((word.upper(), rest.strip()))
        buf = ""
    return lines


def instructions(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def node_env(service: dict[str, Any]) -> dict[str, str]:
    env = service["environment"]
    return {k: str(v) for k, v in env.items()}


def test_every_raftkv_variable_is_a_serve_option() -> None:
    known = serve_envvars()
    assert "RAFTKV_ID" in known and "RAFTKV_CLUSTER" in known  # the mapping is real
    used = set(dockerfile_env())
    for name in NODES:
        used |= set(node_env(compose()["services"][name]))
    raftkv_vars = {v for v in used if v.startswith("RAFTKV_")}
    assert raftkv_vars, "no RAFTKV_* variable found"
    assert raftkv_vars <= set(known), f"not serve options: {sorted(raftkv_vars - set(known))}"
    # Every required serve option is given to every node (by the Dockerfile or compose).
    required = {p.envvar for p in serve.params if p.required}
    for name in NODES:
        given = set(dockerfile_env()) | set(node_env(compose()["services"][name]))
        assert required <= given, f"{name} misses {sorted(required - given)}"


def test_dockerfile_runs_serve_as_a_non_root_user_with_a_healthcheck() -> None:
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0"), users
    (health,) = instructions("HEALTHCHECK")
    assert "CMD" in health and "NONE" not in health
    env = dockerfile_env()
    client_port = parse_addr(env["RAFTKV_CLIENT_ADDR"])[1]
    metrics_port = parse_addr(env["RAFTKV_METRICS_ADDR"])[1]
    assert f":{metrics_port}/readyz" in health  # readiness, from the node's own HTTP port
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["raftkv", "serve"]  # exec form
    exposed = {int(p) for args in instructions("EXPOSE") for p in args.split()}
    assert {client_port, parse_addr(env["RAFTKV_PEER_ADDR"])[1]} <= exposed
    assert env["RAFTKV_DATA_DIR"] in " ".join(instructions("VOLUME"))
    copied = " ".join(instructions("COPY"))
    for package in ("raftkv", "wire", "client", "chaos"):  # setup.cfg's packages
        assert re.search(rf"\b{package}\b", copied), package


def test_compose_wires_three_nodes_like_raftkv_up() -> None:
    doc = compose()
    services = doc["services"]
    volumes = set(doc.get("volumes") or {})
    published = set()
    for i, name in enumerate(NODES, start=1):
        svc = services[name]
        env = {**dockerfile_env(), **node_env(svc)}
        assert env["RAFTKV_ID"] == str(i)
        client_port = parse_addr(env["RAFTKV_CLIENT_ADDR"])[1]
        peer_port = parse_addr(env["RAFTKV_PEER_ADDR"])[1]
        # The cluster list names node1..3 at the peer port every node listens on.
        assert parse_cluster(env["RAFTKV_CLUSTER"]) == {
            n: f"node{n}:{peer_port}" for n in (1, 2, 3)}
        assert env["RAFTKV_ADVERTISE_PEER_ADDR"] == f"{name}:{peer_port}"
        # Host port 700i (or RAFTKV_HOST_PORTi) of loopback only is published to the
        # container's client port: the nodes have no authentication.
        (mapping,) = svc["ports"]
        bind, rest = str(mapping).split(":", 1)
        host, _, container = rest.rpartition(":")
        assert bind == "127.0.0.1" and int(container) == client_port
        assert host == f"${{RAFTKV_HOST_PORT{i}:-700{i}}}"
        published.add(int(host.rsplit("-", 1)[1].rstrip("}")))
        # Clients inside the network are sent to the service name, never to 127.0.0.1.
        assert env["RAFTKV_ADVERTISE_CLIENT_ADDR"] == f"{name}:{client_port}"
        # A named volume of its own, mounted at the data directory.
        (mount,) = svc["volumes"]
        volume, _, path = mount.partition(":")
        assert volume in volumes and path.split(":")[0] == env["RAFTKV_DATA_DIR"]
    assert published == {7001, 7002, 7003}
    mounts = [services[n]["volumes"][0].split(":")[0] for n in NODES]
    assert len(set(mounts)) == 3


def test_compose_has_no_service_beyond_the_nodes() -> None:
    # podman-compose 1.0 ignores `profiles`, so an on-demand service would start with `up`.
    assert set(compose()["services"]) == set(NODES)


def test_image_installs_wheels_into_a_venv_and_takes_the_base_as_a_build_arg() -> None:
    args = instructions("ARG")
    assert "BASE=python:3.11-slim" in args
    assert [f for f in instructions("FROM") if "${BASE}" in f]
    run = " ".join(instructions("RUN"))
    assert "venv /opt/raftkv" in run and "--no-index" in run
    assert dockerfile_env()["PATH"].startswith("/opt/raftkv/bin:")
    build = compose()["services"]["node1"]["build"]
    assert build["args"]["BASE"] == "${RAFTKV_BASE_IMAGE:-python:3.11-slim}"


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    raise AssertionError("no docker-compose (.ci/debian-packages installs it: "
                         "apt-get install docker-compose)")


def test_docker_compose_config_accepts_the_file() -> None:
    cmd = [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert set(NODES) <= set(resolved["services"])
    assert resolved["services"]["node2"]["environment"]["RAFTKV_ID"] == "2"
