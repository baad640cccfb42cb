"""``raftkv up``: a local cluster of real node processes, their logs streamed with a prefix.

Node N listens on client port BASE+N and peer port BASE+100+N (BASE is 7000 by default),
with data in DATA_DIR/node-N, so running it again resumes the same data. The nodes
authenticate each other with a secret made once in DATA_DIR/peer-secret (mode 0600), and
share a random cluster id made once in DATA_DIR/cluster-id.
Ctrl-C sends SIGTERM to every node (a leader hands over leadership first) and waits for
them to exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import trio

from raftkv.node.cluster_id import ensure_cluster_id_file
from raftkv.node.peer_auth import ensure_secret_file
from raftkv.probe import info_raft

SECRET_FILE = "peer-secret"
CLUSTER_ID_FILE = "cluster-id"  # random, made at the first run


def node_command(i: int, nodes: int, data_dir: str, host: str, fsync: str,
                 verbose: int, base: int = 7000, cluster_id: str = "") -> list[str]:
    cluster = ",".join(f"{n}={host}:{base + 100 + n}" for n in range(1, nodes + 1))
    cmd = [sys.executable, "-m", "raftkv", "serve", "--id", str(i),
           "--client-addr", f"{host}:{base + i}", "--peer-addr", f"{host}:{base + 100 + i}",
           "--cluster", cluster, "--data-dir", str(Path(data_dir) / f"node-{i}"),
           "--fsync", fsync, "--peer-secret-file", str(Path(data_dir) / SECRET_FILE)]
    if cluster_id:
        cmd += ["--cluster-id", cluster_id]
    if verbose:
        cmd.append("-" + "v" * verbose)
    return cmd


async def _stream(i: int, proc: trio.Process) -> None:
    assert proc.stderr is not None
    buf = b""
    async for chunk in proc.stderr:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            click.echo(f"node-{i} | {line.decode(errors='replace')}", err=True)


async def _report_exit(i: int, proc: trio.Process) -> None:
    code = await proc.wait()
    click.echo(f"node-{i} exited with status {code}", err=True)


async def _wait_for_leader(nodes: int, host: str, base: int) -> dict[str, str]:
    while True:
        for i in range(1, nodes + 1):
            try:
                info = await trio.to_thread.run_sync(info_raft, f"{host}:{base + i}", 0.5)
            except (OSError, ConnectionError):
                continue
            if info.get("role") == "leader":
                return info
        await trio.sleep(0.1)  # polling other processes: there is no event to wait on


async def _main(nodes: int, data_dir: str, host: str, fsync: str, verbose: int,
                base: int, cluster_id: str) -> int:
    # Handled explicitly (not KeyboardInterrupt): it works even where a parent shell made
    # SIGINT ignored, and a stop is a normal exit, status 0.
    code = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as outer:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    outer.cancel_scope.cancel()
                    return

            outer.start_soon(stop_on_signal)
            code = await _supervise(nodes, data_dir, host, fsync, verbose, base, cluster_id)
            outer.cancel_scope.cancel()
    return code


async def _supervise(nodes: int, data_dir: str, host: str, fsync: str, verbose: int,
                     base: int, cluster_id: str) -> int:
    procs: list[trio.Process] = []
    async with trio.open_nursery() as nursery:
        for i in range(1, nodes + 1):
            proc = await trio.lowlevel.open_process(
                node_command(i, nodes, data_dir, host, fsync, verbose, base, cluster_id),
                stderr=subprocess.PIPE, start_new_session=True,
            )
            procs.append(proc)
            nursery.start_soon(_stream, i, proc)
        try:
            leader = None
            with trio.move_on_after(15):
                leader = await _wait_for_leader(nodes, host, base)
            if leader is None:
                click.echo("raftkv up: no leader after 15 s; see the node logs above", err=True)
                return 1
            ports = ", ".join(str(base + i) for i in range(1, nodes + 1))
            first = base + 1
            click.echo(
                f"RaftKV cluster of {nodes} up: leader is node {leader['node_id']} "
                f"(term {leader['term']}); client ports {ports} on {host}\n"
                f"  nc {host} {first}              then type: set mykey=hello / get mykey\n"
                f"  redis-cli -p {first}           (any node's port works)\n"
                f"  raftkv-cli                  interactive client\n"
                f"  raftkv status               one line per node\n"
                f"Ctrl-C stops the cluster (data stays in {data_dir})."
            )
            for i, proc in enumerate(procs, 1):
                nursery.start_soon(_report_exit, i, proc)
            await trio.sleep_forever()  # until a signal cancels us
        finally:
            with trio.CancelScope(shield=True):
                for proc in procs:
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    for proc in procs:
                        await proc.wait()
                for proc in procs:
                    if proc.returncode is None:
                        proc.kill()
            nursery.cancel_scope.cancel()
    return 0


def run_local_cluster(nodes: int, data_dir: str, host: str, fsync: str, verbose: int,
                      base: int = 7000) -> None:
    # Ctrl-C in the terminal reaches only us (nodes run in their own sessions); we then stop
    # the nodes in order.
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    ensure_secret_file(Path(data_dir) / SECRET_FILE)
    try:
        cluster_id = ensure_cluster_id_file(Path(data_dir) / CLUSTER_ID_FILE,
                                            Path(data_dir) / "node-1")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(trio.run(_main, nodes, data_dir, host, fsync, verbose, base, cluster_id))
