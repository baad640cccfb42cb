"""Real ``raftkv serve`` processes on loopback, for the tests and the chaos suite.

Blocking by design (subprocess + the tiny probe client): the tests that use it are plain
functions driving real clients (redis-cli, redis-py) and the chaos suite calls it from
worker threads. Every process is started in its own session (its own process group) and the
whole group is killed on ``close`` whatever happened, so a failed run leaves no stray node.

The chaos suite needs two things plain tests do not: each node may see its peers at
different addresses (``peer_maps``: node i dials proxy(i->j) instead of j, or a port that
nftables rewrites), and each node may live on its own loopback address (``hosts``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from raftkv.local_cluster import ports_of
from raftkv.node.cluster_id import new_cluster_id
from raftkv.node.peer_auth import ensure_secret_file
from raftkv.probe import call, info_raft
from wire.addr import parse_addr
from wire.reply import ErrorReply

_HANDED_OUT: set[int] = set()  # every port free_ports gave this process
_OPEN_CLUSTERS: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


# For a cluster whose tests count log entries by the writes they pipeline (snapshot
# thresholds): each write its own entry, not gathered into runs (raftkv.node.gathered).
ONE_ENTRY_PER_WRITE = ["--write-run", "1"]


def kill_every_node() -> None:
    """SIGKILL the process group of every node of every LocalCluster of this process: the
    last resort of a harness whose orderly teardown missed its deadline (the nodes live in
    sessions of their own and would outlive it). Safe from any thread."""
    for cluster in list(_OPEN_CLUSTERS):
        for node in list(cluster.nodes.values()):
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(node.proc.pid, signal.SIGCONT)
                    os.killpg(node.proc.pid, signal.SIGKILL)


def retry_call(addr: str, *args: str | bytes, timeout: float = 30.0) -> object:
    """``call`` until the node answers (a restarted one may not listen yet) with a reply
    that is not TRYAGAIN/UNKNOWN (an election is allowed), or ``timeout`` seconds have
    passed: the last reply, or the last connection error raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = call(addr, *args, timeout=15.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # not listening yet: another process, nothing to wait on
            continue
        transient = isinstance(reply, ErrorReply) and reply.text.split()[0] in (
            "TRYAGAIN", "UNKNOWN")
        if not transient or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)  # the cluster asked us to come back later


def free_port_base(nodes: int, host: str = "127.0.0.1") -> int:
    """A ``--port-base`` whose ports ``raftkv up --nodes NODES`` uses (client, peer and
    metrics port of each node: raftkv.local_cluster.ports_of) were all free a moment ago.
    ``raftkv up`` checks them again itself and says so if one was taken since."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randint(20000, 50000)
        socks = []
        try:
            for i in range(1, nodes + 1):
                for port in ports_of(i, base).values():
                    s = socket.socket()
                    socks.append(s)
                    s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port base")


@contextlib.contextmanager
def raftkv_up(args: Sequence[str], env: Mapping[str, str]
              ) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``raftkv up ARGS`` in a session of its own, and the lines of its banner (up to
    "Ctrl-C stops", or all it printed if it exited first); stopped with Ctrl-C after the
    block, killed with its process group if it has not exited 20 s later."""
    proc = subprocess.Popen([sys.executable, "-m", "raftkv", "up", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(env), start_new_session=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        yield proc, lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that were free a moment ago (bound to port 0, then released),
    never one this process was given before: the kernel may hand a just-released port out
    again, and two calls before the first ports are bound (a test's metrics ports, then its
    cluster's) then got the same one, and a node could not start (CI, once)."""
    if len(_HANDED_OUT) > 16_000:  # a long session: forget (the early ones are long bound)
        _HANDED_OUT.clear()
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)  # held until the end: the kernel will not return it meanwhile
            port = s.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


class NodeProcess:
    def __init__(self, node_id: int, client_addr: str, peer_addr: str, data_dir: Path,
                 log_path: Path) -> None:
        self.id = node_id
        self.client_addr = client_addr
        self.peer_addr = peer_addr
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.expect_exit = False  # we killed or stopped it: an exit is not a crash
        self.join: list[str] = []  # started with --join (client addresses), not --cluster

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until every thread of ``pid`` is stopped. SIGSTOP takes effect when each thread
    next enters the kernel, not when kill() returns: a request sent in between may still be
    read (seen on a loaded machine: a "paused" leader applied an INCR sent after the signal)."""
    deadline = time.monotonic() + timeout
    task_dir = f"/proc/{pid}/task"
    while time.monotonic() < deadline:
        try:
            states = [_thread_state(f"{task_dir}/{tid}/stat") for tid in os.listdir(task_dir)]
        except FileNotFoundError:
            return  # gone: nothing left to run
        if all(state in "tT" for state in states if state):
            return
        time.sleep(0.001)
    raise TimeoutError(f"process {pid} did not stop within {timeout}s of SIGSTOP")


def _thread_state(stat_path: str) -> str:
    try:
        with open(stat_path) as f:
            return f.read().rpartition(")")[2].split()[0]  # the field after "(comm)"
    except (FileNotFoundError, IndexError):
        return ""  # the thread exited meanwhile


class LocalCluster:
    """``nodes`` real processes; ports picked free unless given.

    ``hosts``: one listen host per node (e.g. 127.0.0.1, 127.0.0.2, ...), default ``host``
    for all. ``ports``: (client, peer) port per node, default free ports. ``peer_maps``:
    node id -> {peer id: address node dials for that peer}; a peer missing from a node's
    map is dialled at its real peer address. ``node_args``: extra arguments per node.
    ``peer_secret``: every node gets ``--peer-secret-file`` (one random secret, made in
    ``workdir``). ``peer_tls``: a directory made by ``raftkv certs create``; every node
    gets its node certificate, key and CA as ``--peer-tls-*``.
    """

    def __init__(self, workdir: Path, nodes: int = 3, host: str = "127.0.0.1",
                 extra_args: list[str] | None = None, fsync: str = "always",
                 hosts: Sequence[str] | None = None,
                 ports: Sequence[tuple[int, int]] | None = None,
                 peer_maps: Mapping[int, Mapping[int, str]] | None = None,
                 node_args: Mapping[int, list[str]] | None = None,
                 peer_secret: bool = False, peer_tls: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.host = host
        # Given explicitly to the founding nodes: with peer_maps each sees other addresses,
        # so ids derived from their --cluster lists would differ. --join nodes learn it.
        self.cluster_id = new_cluster_id()
        self.extra_args = list(extra_args or [])
        if peer_secret:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.secret_file = ensure_secret_file(self.workdir / "peer-secret")
            self.extra_args += ["--peer-secret-file", str(self.secret_file)]
        if peer_tls is not None:
            self.extra_args += ["--peer-tls-cert", str(peer_tls / "node.crt"),
                                "--peer-tls-key", str(peer_tls / "node.key"),
                                "--peer-tls-ca", str(peer_tls / "ca.crt")]
        self.fsync = fsync
        hosts = list(hosts) if hosts else [host] * nodes
        if len(hosts) != nodes:
            raise ValueError(f"{len(hosts)} hosts for {nodes} nodes")
        if ports is None:
            ports = []
            for h in hosts:
                client, peer = free_ports(2, h)
                ports.append((client, peer))
        if len(ports) != nodes:
            raise ValueError(f"{len(ports)} port pairs for {nodes} nodes")
        self.nodes = {
            i: NodeProcess(i, f"{hosts[i - 1]}:{ports[i - 1][0]}",
                           f"{hosts[i - 1]}:{ports[i - 1][1]}",
                           self.workdir / f"node-{i}", self.workdir / f"node-{i}.log")
            for i in range(1, nodes + 1)
        }
        self.peer_maps: dict[int, dict[int, str]] = {
            i: dict(m) for i, m in (peer_maps or {}).items()}
        self.node_args: dict[int, list[str]] = {i: list(a) for i, a in (node_args or {}).items()}
        _OPEN_CLUSTERS.add(self)

    # -- processes ------------------------------------------------------------------------

    def cluster_arg_for(self, node_id: int) -> str:
        """The --cluster list node ``node_id`` is started with (its view of its peers)."""
        view = self.peer_maps.get(node_id, {})
        return ",".join(f"{n.id}={n.peer_addr if n.id == node_id else view.get(n.id, n.peer_addr)}"
                        for n in self.nodes.values())

    def command(self, node: NodeProcess) -> list[str]:
        members = (["--join", ",".join(node.join)] if node.join
                   else ["--cluster", self.cluster_arg_for(node.id),
                         "--cluster-id", self.cluster_id])
        return [sys.executable, "-m", "raftkv", "serve", "--id", str(node.id),
                "--client-addr", node.client_addr, "--peer-addr", node.peer_addr,
                *members, "--data-dir", str(node.data_dir),
                "--fsync", self.fsync, "-v", *self.extra_args, *self.node_args.get(node.id, [])]

    def add_node(self, node_id: int, *, learner: bool = False,
                 join: Sequence[int] | None = None,
                 addrs: tuple[str, str] | None = None) -> NodeProcess:
        """Start a new node ``node_id`` (free ports, empty data directory) with ``--join``
        pointing at the client addresses of the nodes ``join`` (default: the live ones).
        ``addrs``: (client, peer) address to listen on instead, e.g. a replaced node's."""
        if node_id in self.nodes:
            raise ValueError(f"node {node_id} already exists")
        if addrs is None:
            client, peer = free_ports(2, self.host)
            addrs = (f"{self.host}:{client}", f"{self.host}:{peer}")
        node = NodeProcess(node_id, addrs[0], addrs[1],
                           self.workdir / f"node-{node_id}", self.workdir / f"node-{node_id}.log")
        ids = join if join is not None else [i for i, n in self.nodes.items() if n.alive]
        node.join = [self.nodes[i].client_addr for i in ids]
        if learner:
            self.node_args.setdefault(node_id, []).append("--learner")
        self.nodes[node_id] = node
        self.start(node_id)
        return node

    def forget(self, node_id: int) -> None:
        """Kill node ``node_id`` if it runs and drop it from the harness (a removed member:
        ``wait_for_leader`` and ``close`` no longer look at it)."""
        self.kill(node_id)
        del self.nodes[node_id]

    def start(self, node_id: int | None = None) -> None:
        targets = [self.nodes[node_id]] if node_id else list(self.nodes.values())
        self.workdir.mkdir(parents=True, exist_ok=True)
        for node in targets:
            if node.alive:
                continue
            log = open(node.log_path, "ab")  # noqa: SIM115 - handed to the child process
            node.proc = subprocess.Popen(self.command(node), stdout=log, stderr=log,
                                         start_new_session=True)
            node.expect_exit = False
            log.close()

    def _signal_group(self, node: NodeProcess, sig: int) -> None:
        assert node.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.proc.pid, sig)

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the node's process group; waits for the exit of KILL and TERM."""
        node = self.nodes[node_id]
        if node.alive:
            assert node.proc is not None
            if sig in (signal.SIGKILL, signal.SIGTERM):
                node.expect_exit = True
            self._signal_group(node, sig)
            if sig == signal.SIGTERM:
                # A paused node must act on TERM too. Never CONT before KILL (KILL ends a
                # stopped process as it is): a CONT first let a paused leader read and
                # replicate a request in the instant before it died.
                self._signal_group(node, signal.SIGCONT)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                node.proc.wait(timeout=15)
            elif sig == signal.SIGSTOP:
                wait_stopped(node.proc.pid)

    def pause(self, node_id: int) -> None:
        """SIGSTOP the node: its sockets stay open but nothing answers."""
        self.kill(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self.kill(node_id, signal.SIGCONT)

    def stop(self, node_id: int) -> int:
        """Graceful stop (SIGTERM); returns the exit status."""
        node = self.nodes[node_id]
        if not node.alive:
            return node.proc.returncode if node.proc else 0
        assert node.proc is not None
        node.expect_exit = True
        self._signal_group(node, signal.SIGCONT)
        node.proc.send_signal(signal.SIGTERM)
        return node.proc.wait(timeout=15)

    def wipe(self, node_id: int) -> None:
        shutil.rmtree(self.nodes[node_id].data_dir, ignore_errors=True)

    def crashed(self) -> dict[int, int]:
        """Nodes that exited on their own (not killed or stopped by us): id -> status."""
        out = {}
        for node in self.nodes.values():
            if node.proc is not None and not node.expect_exit:
                code = node.proc.poll()
                if code is not None:
                    out[node.id] = code
        return out

    def close(self) -> None:
        """Kill every node's whole process group (a paused one too) and reap it."""
        for node in self.nodes.values():
            if node.proc is None:
                continue
            node.expect_exit = True
            self._signal_group(node, signal.SIGCONT)
            self._signal_group(node, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=15)

    @contextlib.contextmanager
    def serving(self) -> Iterator[LocalCluster]:
        """Started, with a leader, for the ``with`` block; closed after it (a start that
        fails half way is closed too)."""
        try:
            self.start()
            self.wait_for_leader()
            yield self
        finally:
            self.close()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- observation ----------------------------------------------------------------------

    def info(self, node_id: int, timeout: float = 0.5) -> dict[str, str] | None:
        try:
            return info_raft(self.nodes[node_id].client_addr, timeout)
        except (OSError, ConnectionError):
            return None

    def wait_for_leader(self, timeout: float = 15.0, among: list[int] | None = None,
                        exclude: int = 0) -> int:
        """Id of a leader that the live nodes in ``among`` agree on (same term)."""
        ids = among or [i for i, n in self.nodes.items() if n.alive]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = {i: self.info(i) for i in ids if self.nodes[i].alive}
            leaders = {(int(v["leader_id"]), int(v["term"])) for v in infos.values()
                       if v and v.get("role") == "leader"}
            followers_agree = all(v and int(v["leader_id"]) in {lid for lid, _ in leaders}
                                  for v in infos.values())
            if len(leaders) == 1 and followers_agree:
                (leader, _), = leaders
                if leader != exclude:
                    return leader
            time.sleep(0.05)  # polling other processes: there is no event to wait on
        raise TimeoutError(f"no agreed leader among {ids} after {timeout}s: {self.logs_tail()}")

    def logs_tail(self, lines: int = 15) -> str:
        out = []
        for node in self.nodes.values():
            if node.log_path.exists():
                tail = node.log_path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- node {node.id} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def client_addr(self, node_id: int) -> tuple[str, int]:
        return parse_addr(self.nodes[node_id].client_addr)
