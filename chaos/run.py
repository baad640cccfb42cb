"""``raftkv-chaos run``: real nodes, a seeded schedule of faults, clients, and the checks.

One trio program drives everything: it starts the network backend (proxies, nftables
rules, or nothing for docker), the node processes, the clients and the nemesis; at the end
it heals every fault, reads every key once more (durability), and tears everything down in
``finally`` blocks whatever happened (node process groups killed, rules deleted, proxies
closed). The checks run afterwards, on the recorded history, outside the event loop.

Times in the history, the fault windows and the report are seconds since the workload
started (trio's clock, so client and nemesis timestamps are comparable).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from chaos import checks as chk
from chaos import report
from chaos.cluster import LocalCluster, kill_every_node
from chaos.counters import CounterClient, CounterKeys, Tally, Verdict, check_counters
from chaos.disks import SLACK, TmpfsDisks, stopped_cleanly, wal_space_ahead
from chaos.linearizability import Result, check
from chaos.nemesis import (
    MEMBER_KINDS,
    RESOURCE_NEMESES,
    TRAFFIC_NEMESES,
    Control,
    Injected,
    Nemesis,
    Net,
    Unsupported,
    kinds_of,
    plan,
    supported_kinds,
)
from chaos.proxy import ProxyMesh
from chaos.replicas import compare_replicas
from chaos.result import CheckOutcome, Collected, RunOptions, RunResult
from chaos.watchers import WatchFleet
from chaos.workload import (
    Addr,
    Client,
    Recorder,
    WorkloadConfig,
    final_reads,
    find_leader,
    info_raft,
    spread,
)
from raftkv.certs import create as create_certs
from raftkv.probe import parse_members
from wire.addr import parse_addr

NETS = ("proxy", "nft", "netns", "docker", "none")


class NoNet:
    """``--net none``: the nodes talk over plain loopback at their real addresses. No
    network faults, but every node names its peers alike, which membership changes need:
    a CONFIG entry carries one peer address per member for everyone, while the proxy and
    nft backends give each node its own address for each peer (a proxy, a per-link port)."""

    name = "none"
    kinds = frozenset({"kill", "kill-leader", "pause", *MEMBER_KINDS})

    async def cut(self, links: object) -> None:
        raise Unsupported("--net none cannot cut links")

    async def slow(self, links: object, delay: float, jitter: float) -> None:
        raise Unsupported("--net none cannot delay links")

    async def heal(self) -> None:
        pass

    async def close(self) -> None:
        pass



# -- node control --------------------------------------------------------------------


class LocalControl:
    """``Control`` over a ``LocalCluster`` (its blocking calls run in worker threads), and
    ``MemberControl``: membership changes through ``RAFT ADDNODE``/``REMOVENODE``, with
    ``node_ids`` and ``addrs`` (shared with the session) following the members."""

    def __init__(self, cluster: LocalCluster, member_patience: float = 60.0,
                 disks: TmpfsDisks | None = None) -> None:
        self.cluster = cluster
        self._disks = disks
        # DiskControl: the nodes whose data directory is on a disk the nemesis can fill.
        self.disks: dict[int, object] = dict(disks.mounts) if disks is not None else {}
        self._full: dict[int, int] = {}  # node -> its log's size when its disk was filled
        self._freed: set[int] = set()  # of those, the ones whose disk was freed since
        self._stopped_full: set[int] = set()  # stopped cleanly by a full disk: no crash
        self.node_ids = sorted(cluster.nodes)
        self.addrs = {i: cluster.client_addr(i) for i in cluster.nodes}
        self.member_patience = member_patience
        self.next_id = max(self.node_ids) + 1
        self.retired: dict[int, tuple[str, str]] = {}  # removed node -> (client, peer) addr
        self.on_change: Callable[[], None] = lambda: None  # after node_ids changed

    def _admin(self, via: list[int], *args: str, done: str = "") -> None:
        """Send a RAFT admin command through any of ``via`` until it is committed (OK) or
        refused with an error containing ``done`` (a retry of a change that was made)."""
        from raftkv.probe import call
        from wire.reply import OK, ErrorReply

        deadline = time.monotonic() + self.member_patience
        last: object = None
        while time.monotonic() < deadline:
            for node in via:
                try:
                    last = call(self.cluster.nodes[node].client_addr, *args, timeout=10.0)
                except (OSError, ConnectionError) as exc:
                    last = exc
                    continue
                if last == OK or (done and isinstance(last, ErrorReply) and done in last.text):
                    return
                if isinstance(last, ErrorReply) and last.text.split()[0] == "ERR":
                    raise RuntimeError(f"{' '.join(args)} refused: {last.text}")
            time.sleep(0.2)  # the cluster asked us to retry (TRYAGAIN/UNKNOWN)
        raise RuntimeError(f"{' '.join(args)} not committed within "
                           f"{self.member_patience:.0f} s: {last!r}")

    def _remove(self, node: int) -> None:
        others = [i for i in self.node_ids if i != node]
        self._admin(others, "RAFT", "REMOVENODE", str(node), done="is not a member")
        n = self.cluster.nodes[node]
        self.retired[node] = (n.client_addr, n.peer_addr)
        self.cluster.kill(node)
        self.cluster.wipe(node)  # its disk is gone: it can only come back as a new member
        self.cluster.forget(node)

    async def remove_member(self, node: int) -> None:
        await trio.to_thread.run_sync(self._remove, node)
        self.node_ids.remove(node)
        del self.addrs[node]
        self.on_change()

    async def add_member(self, replacing: int | None = None) -> int:
        """Start an empty node under a new id with ``--join``; it listens where the node it
        replaces did (clients of that node then reach it), else on free ports."""
        new = self.next_id
        self.next_id += 1
        reuse = self.retired.pop(replacing) if replacing is not None else None
        join = list(self.node_ids)
        await trio.to_thread.run_sync(
            lambda: self.cluster.add_node(new, join=join, addrs=reuse))
        self.node_ids.append(new)
        self.addrs[new] = self.cluster.client_addr(new)
        self.on_change()
        return new

    async def wait_all_voters(self) -> None:
        """Until every node in ``node_ids`` reports exactly them, all voters."""
        want = {i: "voter" for i in self.node_ids}
        views: dict[int, dict[int, str]] = {}
        with trio.move_on_after(self.member_patience):
            while True:
                for i in self.node_ids:
                    info = await info_raft(self.addrs[i])
                    views[i] = {k: role for k, (_, role) in
                                parse_members((info or {}).get("members", "")).items()}
                if all(views.get(i) == want for i in self.node_ids):
                    return
                await trio.sleep(0.2)  # polling other processes: no event to wait on
        raise RuntimeError(f"members {views} never became {want}")

    async def kill(self, node: int) -> None:
        await trio.to_thread.run_sync(self.cluster.kill, node)

    async def start(self, node: int) -> None:
        was_down = not self.cluster.nodes[node].alive
        await trio.to_thread.run_sync(self.cluster.start, node)
        if was_down and node in self._freed:  # back after its full disk: judged, done
            self._forget_full(node)

    def _forget_full(self, node: int) -> None:
        self._full.pop(node, None)
        self._freed.discard(node)
        self._stopped_full.discard(node)

    async def fill_disk(self, node: int) -> str:
        assert self._disks is not None
        log = self.cluster.nodes[node].log_path
        self._full[node] = log.stat().st_size if log.exists() else 0
        self._freed.discard(node)
        done = await trio.to_thread.run_sync(self._disks.fill, node)
        ahead = wal_space_ahead(self._disks.mounts[node])
        if ahead:  # the node's WAL goes on in the space it allocated ahead: use it up
            sent = await trio.to_thread.run_sync(self._write_through, node, ahead + SLACK)
            done += f"; {sent // 1024} KiB written for its WAL's {ahead // 1024} KiB ahead"
        return done

    def _write_through(self, node: int, size: int, deadline: float = 5.0) -> int:
        """SET ``chaos-ballast`` (not a workload key) through ``node`` in 64 KiB values
        until ``size`` bytes went out, an error, or ``deadline`` seconds; bytes sent."""
        from raftkv.probe import call
        from wire.reply import ErrorReply

        sent, end = 0, time.monotonic() + deadline
        value = b"b" * 65536
        while sent < size and time.monotonic() < end:
            try:
                reply = call(self.cluster.nodes[node].client_addr, "SET", "chaos-ballast",
                             value, timeout=2.0)
            except (OSError, ConnectionError):
                break
            if isinstance(reply, ErrorReply):
                break
            sent += len(value)
        return sent

    async def free_disk(self, node: int) -> None:
        """Free the space. The node may still be on its way out (it found the disk full
        just before): it stays under watch until it is restarted (``revive``)."""
        assert self._disks is not None
        await trio.to_thread.run_sync(self._disks.free, node)
        self._freed.add(node)

    async def revive(self) -> None:
        """Restart nodes that a full disk stopped (cleanly) once their disk is freed."""
        self.crashed()
        for node in sorted(self._stopped_full & self._freed):
            await self.start(node)

    async def pause(self, node: int) -> None:
        self.cluster.pause(node)

    async def resume(self, node: int) -> None:
        self.cluster.resume(node)

    async def leader(self) -> int | None:
        return await find_leader(self.addrs)

    # TrafficControl (chaos.nemesis): the ports and processes the traffic faults act on.
    @property
    def peers_authenticated(self) -> bool:
        args = self.cluster.extra_args
        return "--peer-secret-file" in args or "--peer-tls-cert" in args

    def peer_address(self, node: int) -> tuple[str, int]:
        return parse_addr(self.cluster.nodes[node].peer_addr)

    def pid(self, node: int) -> int | None:
        proc = self.cluster.nodes[node].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def crashed(self) -> dict[int, int]:
        """Nodes that exited on their own, but for those a full disk stopped as it must
        (one clear line, no traceback): that is the expected reaction to the fault."""
        out = self.cluster.crashed()
        for node in list(out):
            if node in self._full and node not in self._stopped_full and stopped_cleanly(
                self.cluster.nodes[node].log_path, self._full[node]
            ):
                self._stopped_full.add(node)
        return {n: code for n, code in out.items() if n not in self._stopped_full}


# -- the event loop ------------------------------------------------------------------


class Progress:
    """One status line while the run goes (redrawn on a terminal, every 5 s otherwise)."""

    def __init__(self, opts: RunOptions, rec: Recorder) -> None:
        self.opts = opts
        self.rec = rec
        self.fault = "-"
        self.tty = sys.stderr.isatty()
        self._last_line = -math.inf

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            if self.tty:
                sys.stderr.write("\r\x1b[K")
            print(text, file=sys.stderr, flush=True)

    def tick(self) -> None:
        if self.opts.quiet:
            return
        t = self.rec.now()
        c = self.rec.counts
        line = (f"[{t:6.1f}/{self.opts.duration:.0f}s] ops {sum(c.values())} (ok {c['ok']}, "
                f"fail {c['fail']}, info {c['info']})  fault: {self.fault}")
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line[:150])
            sys.stderr.flush()
        elif t - self._last_line >= 5:
            self._last_line = t
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and not self.opts.quiet:
            sys.stderr.write("\n")


async def _wait_leader(control: Control, patience: float) -> int:
    with trio.move_on_after(patience):
        while True:
            leader = await control.leader()
            if leader is not None:
                return leader
            await trio.sleep(0.1)  # polling other processes: no event to wait on
    raise RuntimeError(f"no leader elected within {patience:.0f} s")


async def session(opts: RunOptions, control: Control, net: Net,
                  addrs: dict[int, Addr]) -> Collected:
    """The run proper, on a started cluster: clients + nemesis, heal, final reads; with
    ``--watchers``, the watchers run around all of it (they must outlive the writers)."""
    if not opts.watchers:
        return await _session(opts, control, net, addrs, None)
    await _wait_leader(control, 30.0)
    fleet = WatchFleet(opts.watchers, addrs, opts.key_prefix, opts.seed,
                       drop_every=opts.unsafe_watch_drop)
    async with trio.open_nursery() as nursery:
        await fleet.start_all(nursery)
        try:
            return await _session(opts, control, net, addrs, fleet)
        finally:
            with trio.CancelScope(shield=True):
                await fleet.close()


async def _session(opts: RunOptions, control: Control, net: Net, addrs: dict[int, Addr],
                   fleet: WatchFleet | None) -> Collected:
    leader0 = await _wait_leader(control, 30.0)
    t0 = trio.current_time()
    rec = Recorder(lambda: trio.current_time() - t0)
    progress = Progress(opts, rec)
    supported = supported_kinds(net) | (
        set(RESOURCE_NEMESES) if getattr(control, "disks", None) else set()
    ) | (set(TRAFFIC_NEMESES) if hasattr(control, "peer_address") else set())
    schedule = list(opts.schedule if opts.schedule is not None else
                    plan(opts.seed, opts.nemeses, opts.duration, opts.nodes, supported))
    wanted = {k for n in opts.nemeses for k in kinds_of(n)}
    skipped = [f"{k}: not available with --net {opts.net}"
               + (" (disk faults need root, for tmpfs mounts)" if k in RESOURCE_NEMESES else "")
               for k in sorted(wanted - supported)] if opts.schedule is None else []
    for s in skipped:
        progress.say(f"note: {s}")
    nemesis = Nemesis(control, net, clock=rec.now)
    config = WorkloadConfig(opts.clients, opts.keys, opts.rate, opts.op_timeout, opts.mix,
                            opts.key_prefix)
    rng = random.Random(f"chaos-clients-{opts.seed}")
    nodes = sorted(addrs)
    clients = [Client(i, node, addrs[node], config, rec, random.Random(rng.random()))
               for i, node in enumerate(spread(opts.clients, nodes))]
    tally, counter_keys = Tally(), CounterKeys.with_prefix(opts.key_prefix)
    counter_clients = [
        CounterClient(i, [addrs[n] for n in nodes], counter_keys, tally,
                      random.Random(f"chaos-counters-{opts.seed}-{i}"), rate=opts.rate,
                      sessions=not opts.unsafe_counters_without_sessions)
        for i in range(opts.counters)]

    def retarget() -> None:
        """Clients of a removed node go to its replacement (same address) or a member."""
        by_addr = {a: i for i, a in addrs.items()}
        live = sorted(addrs)
        for c in clients:
            if c.node not in addrs:
                c.node = by_addr.get(c.addr, live[c.index % len(live)])
                c.addr = addrs[c.node]

    if hasattr(control, "on_change"):
        control.on_change = retarget
    injected: list[Injected] = []
    crashes: list[str] = []
    stop = trio.Event()

    seen_crashed: set[int] = set()

    async def tick() -> None:
        """Progress, and a watch for nodes that die without being killed (a server bug)."""
        while not stop.is_set():
            progress.tick()
            if hasattr(control, "revive"):
                await control.revive()
            crashed = getattr(control, "crashed", dict)()
            for node, code in sorted(crashed.items()):
                if node not in seen_crashed:
                    seen_crashed.add(node)
                    msg = (f"n{node} exited on its own with status {code} at {rec.now():.1f} s "
                           f"(see nodes/node-{node}.log)")
                    crashes.append(msg)
                    progress.say(f"NODE CRASH: {msg}")
            with trio.move_on_after(0.5):
                await stop.wait()

    async with trio.open_nursery() as nursery:
        nemesis.background = nursery  # traffic faults run here until healed
        for c in clients:
            nursery.start_soon(c.run, stop)
        for cc in counter_clients:
            nursery.start_soon(cc.run, stop)
        nursery.start_soon(tick)
        try:
            for fault in schedule:
                if rec.now() + fault.duration > opts.duration:  # a membership change overran
                    skipped.append(f"{fault.kind} at {fault.start:.1f} s: no time left")
                    continue
                await trio.sleep_until(t0 + fault.start)
                start = rec.now()
                try:
                    desc, targets = await nemesis.inject(fault)
                    start = nemesis.applied_at
                except Unsupported as exc:
                    desc, targets = f"skipped: {exc}", ()
                progress.fault = f"{fault.kind}: {desc}"
                if desc.startswith("skipped"):
                    skipped.append(f"{fault.kind} at {start:.1f} s: {desc}")
                await trio.sleep_until(t0 + fault.start + fault.duration)
                await nemesis.heal()
                desc, nemesis.heal_note = desc + nemesis.heal_note, ""
                progress.fault = "-"
                if not desc.startswith("skipped"):
                    injected.append(Injected(fault.kind, start, rec.now(), desc, targets))
                    progress.say(f"[{start:6.1f}s] {fault.kind}: {desc} (healed at "
                                 f"{rec.now():.1f} s)")
            await trio.sleep_until(t0 + opts.duration)
        finally:
            with trio.CancelScope(shield=True):
                await nemesis.heal()
                stop.set()
    end = rec.now()
    progress.done()
    if hasattr(control, "revive"):
        await control.revive()
    for node in getattr(control, "crashed", dict)():
        await control.start(node)  # give the final reads the whole cluster

    async def leader_addr() -> Addr | None:
        leader = await control.leader()
        return addrs[leader] if leader is not None else None

    final_start = rec.now()
    final = await final_reads(leader_addr, config.key_names, 30.0)
    final_span = (final_start, rec.now())
    exactly_once = None
    if counter_clients:
        got = await final_reads(leader_addr, [counter_keys.counter, counter_keys.log], 30.0)
        exactly_once = (check_counters(tally, got[counter_keys.counter], got[counter_keys.log])
                        if len(got) == 2 else Verdict(False, "no final read of the counters"))
    watch = None
    if fleet is not None:
        progress.say(f"settling {opts.watchers} watchers ...")
        watch = await fleet.settle(leader_addr, rec.ops, config.key_names)
    replicas = await compare_replicas(addrs) if opts.compare_replicas else None
    return Collected(tuple(rec.ops), tuple(injected), tuple(skipped), final, tuple(crashes),
                     end, leader0, exactly_once, final_span=final_span, replicas=replicas,
                     watch=watch)


async def drive(opts: RunOptions) -> Collected:
    """Set up the backend and nodes, run the session, tear everything down."""
    nodes = list(range(1, opts.nodes + 1))
    if opts.net == "docker":
        from chaos.docker import DockerBackend

        if len(opts.endpoints) != opts.nodes:
            raise ValueError(f"--net docker needs --endpoints with {opts.nodes} addresses")
        addrs = {i: parse_addr(e) for i, e in zip(nodes, opts.endpoints, strict=True)}
        backend = DockerBackend(addrs, opts.project, opts.docker_network,
                                docker=opts.engine, reconnect=opts.reconnect)
        try:
            return await session(opts, backend, backend, addrs)
        finally:
            with trio.CancelScope(shield=True):
                await backend.close()

    workdir = opts.out / "nodes"
    node_args = {i: ["--unsafe-stale-reads"] for i in nodes} if opts.unsafe_stale_reads else {}
    # Hostile traffic claims members' ids in its Hellos only where peers authenticate (the
    # supported configuration, README Security): the run gives its nodes a peer secret.
    secured = secure_cluster(opts.out) if opts.tls else (
        {"peer_secret": True} if "hostile" in opts.nemeses else {})
    nft_net = None
    netns_net = None
    if opts.net == "netns":
        from chaos import netns

        netns_net = netns.NetnsNet(nodes, reconnect=opts.reconnect)
        try:
            await trio.to_thread.run_sync(netns_net.setup)
        except BaseException:
            netns_net.teardown()
            raise
        cluster = netns.NetnsCluster(workdir, netns_net, node_args=node_args)
    elif opts.net == "nft":
        from chaos import nft

        nft.bring_up_loopback()
        nft_net = nft.NftNet(nodes, nft.require_nft())
        cluster = LocalCluster(workdir, opts.nodes, hosts=[nft.host(i) for i in nodes],
                               ports=[(nft.CLIENT_PORT, nft.PEER_PORT)] * opts.nodes,
                               peer_maps={i: nft_net.peer_map(i) for i in nodes},
                               node_args=node_args, **secured)
    else:  # proxy: the peer maps are set once the proxies listen; none: no maps
        cluster = LocalCluster(workdir, opts.nodes, node_args=node_args, **secured)
    disks = None
    if set(opts.nemeses) & set(RESOURCE_NEMESES) and TmpfsDisks.available():
        disks = TmpfsDisks()
        for i, node in cluster.nodes.items():
            disks.mount(i, node.data_dir)
    control = LocalControl(cluster, disks=disks)
    try:
        async with trio.open_nursery() as nursery:
            net: Net
            if nft_net is not None:
                await nft_net.setup()
                net = nft_net
            elif netns_net is not None:
                net = netns_net
            elif opts.net == "none":
                net = NoNet()
            else:
                mesh = ProxyMesh({i: parse_addr(n.peer_addr) for i, n in cluster.nodes.items()},
                                 seed=opts.seed)
                await nursery.start(mesh.run)
                cluster.peer_maps = {i: mesh.peer_map(i) for i in nodes}
                net = mesh
            await trio.to_thread.run_sync(cluster.start)
            collected = await session(opts, control, net, control.addrs)
            nursery.cancel_scope.cancel()
        return collected
    finally:
        cluster.close()
        if disks is not None:
            disks.unmount_all()
        if netns_net is not None:
            netns_net.teardown()
        if nft_net is not None:
            with trio.CancelScope(shield=True), contextlib.suppress(nft.NftError):
                await nft_net.close()


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived: the run was torn down before its end."""


TEARDOWN_DEADLINE = 30.0  # seconds from a stop signal to the forced end (README: chaos)


def _force_end(code: int, why: str) -> None:
    """The orderly teardown missed its deadline (or a second signal asked not to wait):
    kill every node's process group and leave at once. Runs on a timer thread."""
    kill_every_node()
    sys.stderr.write(f"raftkv-chaos: {why}; killed every node process group\n")
    sys.stderr.flush()
    os._exit(code)


async def drive_until_signalled(opts: RunOptions) -> Collected:
    """``drive``, but SIGINT, SIGTERM and SIGHUP cancel it, so the ``finally`` blocks still
    kill the node process groups (they live in their own sessions and would outlive a
    harness killed outright).

    Ctrl-C goes through the same signal receiver rather than trio's default handler, which
    raises KeyboardInterrupt wherever the main thread happens to be: half-way through a
    nemesis step or a connection's bookkeeping, it left a run that never finished tearing
    down (CI, once). Here a signal cancels the run, and KeyboardInterrupt (SIGINT) or
    Terminated is raised once the teardown is over. The teardown has a deadline:
    TEARDOWN_DEADLINE seconds after the first signal, or at a second one, every node is
    killed and the process exits."""
    stopped: list[int] = []
    timers: list[threading.Timer] = []
    collected: Collected | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:

        async def watch(run: trio.CancelScope) -> None:
            async for signum in signals:
                code = 130 if signum == signal.SIGINT else 143
                if stopped:
                    _force_end(code, "a second signal during the teardown")
                stopped.append(signum)
                timer = threading.Timer(TEARDOWN_DEADLINE, _force_end, (
                    code, f"the teardown ran past {TEARDOWN_DEADLINE:.0f} s"))
                timer.daemon = True
                timer.start()
                timers.append(timer)
                run.cancel()

        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as run:
                nursery.start_soon(watch, run)
                collected = await drive(opts)
            nursery.cancel_scope.cancel()
    for timer in timers:  # torn down in time
        timer.cancel()
    if stopped or collected is None:
        if stopped and stopped[0] != signal.SIGINT:
            raise Terminated(signal.Signals(stopped[0]).name)
        raise KeyboardInterrupt
    return collected


# -- the checks ----------------------------------------------------------------------


def analyse(opts: RunOptions, col: Collected) -> RunResult:
    history = list(col.history)
    deadline = opts.check_timeout
    t = time.monotonic()
    lin = check(history, max_states=opts.check_budget, timeout=deadline)
    left = max(10.0, deadline - (time.monotonic() - t))
    dur = chk.check_durability(history, col.final, max_states=opts.check_budget, timeout=left,
                               span=col.final_span)
    windows = [chk.FaultWindow(f.start, f.end, f.kind) for f in col.faults]
    avail = chk.availability(history, windows, start=0.0, end=min(col.end, opts.duration))
    return RunResult(opts, col, lin, dur, avail, tuple(_judge(opts, col, lin, dur, avail)))


def _judge(opts: RunOptions, col: Collected, lin: Result, dur: chk.Durability,
           avail: chk.AvailabilityReport) -> list[CheckOutcome]:
    out = [CheckOutcome("linearizability", lin.ok, lin.summary())]
    keys = WorkloadConfig(keys=opts.keys, key_prefix=opts.key_prefix).key_names
    missing = sorted(set(keys) - set(col.final))
    if missing:
        out.append(CheckOutcome("durability", False,
                                f"no final read of {', '.join(missing)} after healing"))
    elif dur.lost:
        out.append(CheckOutcome("durability", False,
                                f"{len(dur.lost)} acknowledged writes lost"))
    elif not lin.ok:
        out.append(CheckOutcome("durability", dur.ok, "no lost write proven; the history "
                                "itself is not linearizable (see linearizability)",
                                counted=False))
    else:
        out.append(CheckOutcome("durability", dur.ok, f"{len(col.final)} keys read after "
                                f"healing: {dur.linearizability.summary()}"))
    problems = []
    for e in avail.elections:
        if e.latency is None or e.latency > opts.max_election:
            took = "never" if e.latency is None else f"{e.latency:.1f} s"
            problems.append(f"{e.fault.kind} at {e.fault.start:.1f} s recovered {took}")
    calm = avail.by_kind[0]
    if calm.window_share is not None and calm.window_share < opts.min_calm_up:
        problems.append(f"up in only {calm.window_share:.0%} of windows outside faults")
    ok_writes = sum(1 for op in col.history if op.outcome == "ok" and op.f != "read")
    if ok_writes == 0:
        problems.append("no write succeeded at all")
    out.append(CheckOutcome("availability", not problems, "; ".join(problems) or (
        f"up {_pct(calm.window_share)} of windows outside faults; "
        f"{len(avail.elections)} leader faults recovered within {opts.max_election:.0f} s")))
    if col.exactly_once is not None:
        out.append(CheckOutcome("exactly-once", col.exactly_once.ok, col.exactly_once.summary))
    if col.replicas is not None:
        out.append(CheckOutcome("replicas", col.replicas.ok, col.replicas.summary))
    if col.watch is not None:
        out.append(CheckOutcome("watch", col.watch.ok, col.watch.summary))
    out.append(CheckOutcome("nodes", not col.crashes,
                            "; ".join(col.crashes) or "no node exited on its own"))
    return out


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


# -- entry point ---------------------------------------------------------------------


def execute(opts: RunOptions) -> RunResult:
    """Run, check, write the report; the caller prints the verdict and exits."""
    opts.out.mkdir(parents=True, exist_ok=True)
    if not opts.quiet:
        print(f"raftkv-chaos run: seed {opts.seed}, {opts.nodes} nodes, {opts.duration:.0f} s, "
              f"nemesis {','.join(opts.nemeses) or 'none'}, {opts.clients} clients, "
              f"{opts.keys} keys, --net {opts.net}, out {opts.out}", file=sys.stderr)
    try:
        collected = trio.run(drive_until_signalled, opts)
    except BaseExceptionGroup as group:  # a stop request, reached from inside some task
        stops, rest = group.split((Terminated, KeyboardInterrupt))
        if stops is None or rest is not None:
            raise
        first = stops.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    if not opts.quiet:
        print(f"checking {len(collected.history)} operations ...", file=sys.stderr)
    result = analyse(opts, collected)
    report.write(result)
    return result


def options_to_args(opts: RunOptions) -> list[str]:
    """The ``raftkv-chaos run`` arguments that reproduce ``opts`` (for re-executing)."""
    args = ["run", "--nodes", str(opts.nodes), "--duration", str(opts.duration),
            "--nemesis", ",".join(opts.nemeses) or "none", "--clients", str(opts.clients),
            "--keys", str(opts.keys), "--seed", str(opts.seed), "--out", str(opts.out),
            "--net", opts.net, "--rate", str(opts.rate), "--op-timeout", str(opts.op_timeout),
            "--check-timeout", str(opts.check_timeout), "--reconnect", opts.reconnect,
            "--counters", str(opts.counters), "--watchers", str(opts.watchers),
            "--expiring", str(opts.mix.expiring)]
    if opts.unsafe_stale_reads:
        args.append("--unsafe-stale-reads")
    if opts.unsafe_counters_without_sessions:
        args.append("--unsafe-counters-without-sessions")
    if opts.unsafe_watch_drop:
        args += ["--unsafe-watch-drop", str(opts.unsafe_watch_drop)]
    if opts.quiet:
        args.append("--quiet")
    if opts.tls:
        args.append("--tls")
    return args


def secure_cluster(out: Path) -> dict[str, Any]:
    """LocalCluster arguments for --tls: certificates and a password made in ``out``; the
    password and CA go into this process's environment, where raftkv.probe (the harness's
    INFO calls) and the workload's connections (chaos.workload) read them."""
    certs_dir = out / "certs"
    if not (certs_dir / "node.crt").exists():
        create_certs(certs_dir)
    password = secrets.token_urlsafe(18)
    os.environ["RAFTKV_CACERT"] = str(certs_dir / "ca.crt")
    os.environ["RAFTKV_PASSWORD"] = password
    os.environ.pop("RAFTKV_USER", None)
    os.environ["RAFTKV_REQUIREPASS"] = password  # the nodes inherit it (not a flag: ps)
    return {"peer_tls": certs_dir,
            "extra_args": ["--tls-cert", str(certs_dir / "node.crt"),
                           "--tls-key", str(certs_dir / "node.key")]}

