"""``raftkv up``: a local cluster of real node processes, their logs streamed with a prefix.

Node N listens on client port BASE+N, peer port BASE+100+N and serves /metrics, /livez and
/readyz on BASE+2000+N (BASE is 7000 by default), with data in DATA_DIR/node-N, so running
it again resumes the same data. Before starting anything it checks that every one of those
ports is free, and says in one line which is not (another cluster answering on it, or
something else holding it). The nodes authenticate each other with a secret made once
in DATA_DIR/peer-secret (mode 0600), and share a random cluster id made once in
DATA_DIR/cluster-id. Ctrl-C sends SIGTERM to every node (a leader hands over leadership
first) and waits for them to exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import trio

from raftkv.local_tls import LocalTLS
from raftkv.local_tls import prepare as prepare_tls
from raftkv.node.cluster_id import ensure_cluster_id_file, stored_cluster_id
from raftkv.node.peer_auth import ensure_secret_file
from raftkv.probe import call, parse_info
from raftkv.storage import DiskStorageError
from raftkv.storage.peek import peek_config

MAX_UP_NODES = 9  # ``raftkv up --nodes``' bound (cli.py)


def ports_of(i: int, base: int) -> dict[str, int]:
    """Node ``i``'s ports by the flag that sets them."""
    return {"--client-addr": base + i, "--peer-addr": base + 100 + i,
            "--metrics-addr": base + 2000 + i}

SECRET_FILE = "peer-secret"
CLUSTER_ID_FILE = "cluster-id"  # random, made at the first run


def node_command(i: int, nodes: int, data_dir: str, host: str, fsync: str,
                 verbose: int, base: int = 7000, cluster_id: str = "",
                 extra: tuple[str, ...] = ()) -> list[str]:
    cluster = ",".join(f"{n}={host}:{base + 100 + n}" for n in range(1, nodes + 1))
    ports = ports_of(i, base)
    cmd = [sys.executable, "-m", "raftkv", "serve", "--id", str(i),
           "--cluster", cluster, "--data-dir", str(Path(data_dir) / f"node-{i}"),
           "--fsync", fsync, "--peer-secret-file", str(Path(data_dir) / SECRET_FILE)]
    for flag, port in ports.items():
        cmd += [flag, f"{host}:{port}"]
    if cluster_id:
        cmd += ["--cluster-id", cluster_id]
    if verbose:
        cmd.append("-" + "v" * verbose)
    return cmd + list(extra)


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


def preflight(nodes: int, host: str, base: int) -> str | None:
    """One line saying why the cluster cannot start on these ports, or None if it can."""
    for i in range(1, nodes + 1):
        for flag, port in ports_of(i, base).items():
            addr = f"{host}:{port}"
            if flag == "--client-addr":
                try:
                    info = parse_info(call(addr, "INFO", "server", "raft", timeout=0.5))
                except (OSError, ConnectionError):
                    info = {}
                if info.get("node_id"):
                    return (f"another RaftKV cluster is already answering on {addr} (node "
                            f"{info['node_id']}, pid {info.get('process_id', '?')}, data "
                            f"{info.get('data_dir', '?')}); stop it, or use --port-base")
            with socket.socket() as sock:
                # As trio's listeners do: a port in TIME_WAIT after a stop is free to reuse.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    return (f"{addr} ({flag} of node {i}) is not free: "
                            f"{exc.strerror or exc}; stop what uses it, or use --port-base")
    return None


def lost_nodes(nodes: int, data_dir: str) -> str | None:
    """One line if some of the nodes' directories hold a cluster's state and others are
    empty, else None. An empty one would bootstrap as if the cluster were new, and a voter
    that comes back empty under its id can elect a node that missed acknowledged writes
    (attack7: a deleted ``node-3`` then ``raftkv up``). ``--nodes`` above the cluster's
    size is the same case: new nodes join a running cluster, they do not bootstrap."""
    held = [i for i in range(1, nodes + 1)
            if stored_cluster_id(str(Path(data_dir) / f"node-{i}")) is not None]
    empty = [i for i in range(1, nodes + 1) if i not in held]
    if not held or not empty:
        return None
    names = ", ".join(f"node-{i}" for i in empty)
    return (f"{data_dir} holds a cluster ({', '.join(f'node-{i}' for i in held)}) but {names} "
            f"{'is' if len(empty) == 1 else 'are'} empty: a member that lost its data must not "
            f"come back under its id (acknowledged writes could be lost). Start the nodes "
            f"that have data with --nodes {len(held)} if they are 1..{len(held)}, add new "
            f"members with `raftkv member add` and `raftkv serve --join`, or remove "
            f"{data_dir} to start a new cluster")


def stored_voters(nodes: int, data_dir: str) -> list[int] | None:
    """The voters of the cluster in ``data_dir``, as the most advanced of node-1..N's
    directories records them (its log's last configuration); None if none holds state or
    none can be read."""
    best: tuple[int, list[int]] | None = None
    for i in range(1, nodes + 1):
        d = str(Path(data_dir) / f"node-{i}")
        if stored_cluster_id(d) is None:
            continue
        try:  # read only: the node's own open repairs what needs it, and logs it (attack23)
            last, config = peek_config(d)
        except (DiskStorageError, OSError, ValueError):
            continue
        voters = sorted(m.id for m in config.members if not m.learner)
        if best is None or last > best[0]:
            best = (last, voters)
    return None if best is None else best[1]


def short_of_quorum(nodes: int, data_dir: str) -> str | None:
    """One line if ``--nodes`` starts too few of the directory's voters to elect a leader
    (``--nodes 1`` over a 3-node cluster's directory, which only said "no leader after 15
    s"): what the directory holds and what to run instead; else None."""
    voters = stored_voters(nodes, data_dir)
    if not voters:
        return None
    started = [v for v in voters if v <= nodes]
    if len(started) > len(voters) // 2:
        return None
    held = ", ".join(map(str, voters))
    if voters == list(range(1, len(voters) + 1)) and len(voters) <= MAX_UP_NODES:
        instead = f"run `raftkv up --data-dir {data_dir} --nodes {len(voters)}`"
    else:
        instead = ("start its other voters with `raftkv serve` on their own data, or, if "
                   "they are lost for good, see `raftkv recover --force-new-cluster`")
    return (f"{data_dir} holds a cluster of {len(voters)} voters (nodes {held}); --nodes "
            f"{nodes} starts {len(started)} of them, not a majority, so no leader can be "
            f"elected: {instead}")


async def _wait_for_leader(nodes: int, host: str, base: int,
                           procs: list[trio.Process]) -> dict[str, str]:
    """The leader among OUR processes (its INFO's process_id is one of theirs)."""
    pids = {str(p.pid) for p in procs}
    while True:
        for i, proc in enumerate(procs, 1):
            if proc.returncode is not None:
                raise RuntimeError(f"node-{i} exited with status {proc.returncode} before a "
                                   "leader was elected; see its log above")
        for i in range(1, nodes + 1):
            try:
                reply = await trio.to_thread.run_sync(
                    lambda a=f"{host}:{base + i}": call(a, "INFO", "server", "raft",
                                                        timeout=0.5))
            except (OSError, ConnectionError):
                continue
            info = parse_info(reply)
            if info.get("role") == "leader" and info.get("process_id") in pids:
                return info
        await trio.sleep(0.1)  # polling other processes: there is no event to wait on


def _cli_command() -> str:
    """How to run raftkv-cli here: on PATH, next to this Python (a venv not activated), or
    as a module of this Python."""
    if shutil.which("raftkv-cli"):
        return "raftkv-cli"
    beside = Path(sys.executable).parent / "raftkv-cli"
    if beside.exists():
        return str(beside)
    return f"{sys.executable} -m client"


def banner(nodes: int, host: str, base: int, leader: dict[str, str], data_dir: str,
           tls: LocalTLS | None = None) -> str:
    """What `raftkv up` prints once a leader is elected: how to connect, with what is
    installed on this machine, in aligned columns."""
    first = f"{host}:{base + 1}"
    ports = ", ".join(str(base + i) for i in range(1, nodes + 1))
    cli = _cli_command()
    tools = [(f"{cli} --endpoints {first}", "interactive client (help, Tab completion)"),
             (f"{cli} SET greeting hello", "one command")]
    if shutil.which("redis-cli"):
        target = "" if host in ("127.0.0.1", "localhost") else f"-h {host} "
        tools.append((f"redis-cli {target}-p {base + 1}", "any node's port works"))
    tools.append(("raftkv status", "one line per node"))
    scheme = "http"
    if tls is not None:  # TLS on every port, a password, a token (raftkv/local_tls.py)
        tools = tls.connect_lines(cli, host, base + 1, bool(shutil.which("redis-cli")))
        tools += tls.metrics_lines(host, base + 2001)
        scheme = "https"
    else:
        tools.append((f"curl http://{host}:{base + 2001}/metrics",
                      "Prometheus metrics (also /livez /readyz)"))
    width = max(len(cmd) for cmd, _ in tools)
    metrics = ", ".join(f"{scheme}://{host}:{base + 2000 + i}/metrics"
                        for i in range(1, nodes + 1))
    lines = [f"RaftKV cluster of {nodes} up: leader is node {leader['node_id']} "
             f"(term {leader['term']}); client ports {ports} on {host}",
             *(f"  {cmd:<{width}}  {what}" for cmd, what in tools),
             f"metrics: {metrics}",
             f"Ctrl-C stops the cluster (data stays in {data_dir})."]
    return "\n".join(lines)


async def _main(nodes: int, data_dir: str, host: str, fsync: str, verbose: int,
                base: int, cluster_id: str, tls: LocalTLS | None) -> int:
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
            code = await _supervise(nodes, data_dir, host, fsync, verbose, base, cluster_id,
                                    tls)
            outer.cancel_scope.cancel()
    return code


async def _supervise(nodes: int, data_dir: str, host: str, fsync: str, verbose: int,
                     base: int, cluster_id: str, tls: LocalTLS | None) -> int:
    extra = tuple(tls.node_args()) if tls is not None else ()
    procs: list[trio.Process] = []
    async with trio.open_nursery() as nursery:
        for i in range(1, nodes + 1):
            proc = await trio.lowlevel.open_process(
                node_command(i, nodes, data_dir, host, fsync, verbose, base, cluster_id,
                             extra),
                stderr=subprocess.PIPE, start_new_session=True,
            )
            procs.append(proc)
            nursery.start_soon(_stream, i, proc)
        try:
            leader = None
            try:
                with trio.move_on_after(15):
                    leader = await _wait_for_leader(nodes, host, base, procs)
            except RuntimeError as exc:
                click.echo(f"raftkv up: {exc}", err=True)
                return 1
            if leader is None:
                click.echo("raftkv up: no leader after 15 s; see the node logs above", err=True)
                return 1
            click.echo(banner(nodes, host, base, leader, data_dir, tls))
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
                      base: int = 7000, tls: bool = False) -> None:
    # Ctrl-C in the terminal reaches only us (nodes run in their own sessions); we then stop
    # the nodes in order.
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    local_tls = None
    if tls:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        local_tls = prepare_tls(Path(data_dir), host)
        # Our own probes and the nodes (their password) read these; not flags (`ps`).
        os.environ.update(local_tls.client_env())
    problem = (lost_nodes(nodes, data_dir) or preflight(nodes, host, base)
               or short_of_quorum(nodes, data_dir))
    if problem is not None:
        click.echo(f"raftkv up: {problem}", err=True)
        raise SystemExit(1)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    ensure_secret_file(Path(data_dir) / SECRET_FILE)
    try:
        cluster_id = ensure_cluster_id_file(Path(data_dir) / CLUSTER_ID_FILE,
                                            Path(data_dir) / "node-1")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    raise SystemExit(trio.run(_main, nodes, data_dir, host, fsync, verbose, base, cluster_id,
                              local_tls))
