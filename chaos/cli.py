"""``raftkv-chaos``: the deterministic simulator and the real-process chaos suite."""

from __future__ import annotations

import click

from chaos import fuzz as fuzzing
from raftkv import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftkv-chaos")
def main() -> None:
    """Break RaftKV on purpose and check that it holds."""


@main.command()
@click.option("--seeds", "count", type=click.IntRange(min=1), default=100, show_default=True,
              help="How many seeds (independent simulations) to run.")
@click.option("--seed-start", type=click.IntRange(min=0), default=0, show_default=True,
              help="The first seed.")
@click.option("--nodes", type=click.IntRange(1, 9),
              help="Cluster size (default: drawn from each seed: 3 or 5, sometimes 7).")
@click.option("--steps", type=click.IntRange(min=1),
              help="Virtual ticks of the fault phase per seed (default 500, 5000 with --long).")
@click.option("--long", "long_", is_flag=True, help="Ten times longer runs.")
@click.option("--quiet", is_flag=True, help="No progress lines: failures and the summary.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (the results do not depend on it).")
@click.option("--bug", "bugs", multiple=True, metavar="NAME",
              help="Test only: switch on a deliberate core bug (RaftConfig.bugs).")
@click.option("--ttl/--no-ttl", default=None,
              help="KV workload with TTLs, skewed and jumping clocks, active expiry "
                   "(default: 15 % of the seeds).")
@click.option("--sessions/--no-sessions", default=None,
              help="KV workload of session clients retrying INCR/APPEND with RAFT ONCE "
                   "(default: 15 % of the seeds).")
@click.option("--slow-writes/--no-slow-writes", default=None,
              help="Readies whose fsync stays in flight while the core is stepped and sends "
                   "what may leave early (default: 50 % of the seeds).")
@click.option("--txn/--no-txn", default=None,
              help="KV workload of MULTI/EXEC transactions (WATCH included), Lua scripts, "
                   "and sessions that expire (default: half the seeds with --ttl or --sessions).")
@click.option("--gone-hints/--no-gone-hints", default=None,
              help="Survivors of a crash are told the node is gone, as a refused peer port "
                   "tells the runtime (default: 50 % of the seeds).")
def sim(count: int, seed_start: int, nodes: int | None, steps: int | None, long_: bool,
        quiet: bool, jobs: int, bugs: tuple[str, ...], ttl: bool | None,
        sessions: bool | None, slow_writes: bool | None, txn: bool | None,
        gone_hints: bool | None) -> None:
    """Run seeded deterministic simulations of the consensus core.

    Each seed drives one cluster of consensus cores through crashes, torn writes,
    partitions, lossy and slow links, checking Raft's safety properties after every step,
    then heals everything and checks liveness. Exit status 0 only if every seed held.
    """
    from chaos.sim.report import run_cli
    from raftkv.raft import RaftConfig

    try:
        RaftConfig(bugs=frozenset(bugs))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--bug") from None
    code = run_cli(count, seed_start, nodes, steps, long_, quiet, jobs, frozenset(bugs),
                   ttl=ttl, sessions=sessions, slow_writes=slow_writes, txn=txn,
                   gone_hints=gone_hints)
    raise SystemExit(code)


def _default_out() -> str:
    import time

    return f"results/{time.strftime('%Y%m%d-%H%M%S')}"


def _common_run_options(fn):  # type: ignore[no-untyped-def]
    """Options ``run`` and ``partition`` share."""
    opts = [
        click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True,
                     help="Cluster size."),
        click.option("--clients", type=click.IntRange(min=1), default=10, show_default=True,
                     help="Concurrent clients, spread over the nodes."),
        click.option("--keys", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Size of the key set."),
        click.option("--seed", type=click.IntRange(min=0),
                     help="Seed of the fault schedule and the workload (default: random)."),
        click.option("--out", type=click.Path(file_okay=False),
                     help="Report directory (default: results/<timestamp>)."),
        click.option("--net", type=click.Choice(["proxy", "nft", "netns", "docker", "none"]),
                     default="proxy", show_default=True,
                     help="proxy: userspace relays, no privileges; nft: nftables rules in a "
                          "private network namespace (root); docker: the compose cluster "
                          "(needs --endpoints and a Docker engine); netns: a network namespace "
                          "per node, a cut node comes back at a NEW address (root); "
                          "none: plain loopback, "
                          "no network faults (kill, pause, member only)."),
        click.option("--rate", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
                     help="Operations per second per client."),
        click.option("--expiring", type=click.FloatRange(0, 1), default=0.0,
                     show_default=True,
                     help="Share of writes sent as SET k v PX ms (200-2000 ms), checked "
                          "with the expiry model."),
        click.option("--counters", type=click.IntRange(0, 200), default=2, show_default=True,
                     help="Session clients retrying INCR/APPEND on two shared keys, "
                          "checked for exactly-once (0: none)."),
        click.option("--watchers", type=click.IntRange(0, 64), default=0, show_default=True,
                     help="Change-feed watchers (client.watch) on different nodes with "
                          "different filters, checked against the full feed: no gap, "
                          "duplicate or reorder; every acknowledged write in the feed."),
        click.option("--op-timeout", type=click.FloatRange(min=0.1), default=2.5,
                     show_default=True, help="An operation without a reply by then is "
                                              "'info' (unknown) and the client reconnects."),
        click.option("--endpoints", default="",
                     help="--net docker: the nodes' client addresses, node 1 first."),
        click.option("--project", default=None,
                     help="--net docker: the compose project (default: whichever runs "
                          "services node1..N)."),
        click.option("--docker-network", default=None,
                     help="--net docker: the network to disconnect nodes from "
                          "(default: the nodes' network)."),
        click.option("--engine", type=click.Choice(["docker", "podman"]), default="docker",
                     show_default=True, help="--net docker: the engine CLI that drives the "
                                             "containers."),
        click.option("--reconnect", type=click.Choice(["alias", "plain"]),
                     default="alias", show_default=True,
                     help="--net docker/netns: a cut node comes back at a new address "
                          "with its name (docker: `network connect --alias SERVICE`) or, "
                          "plain, without it, as the original partition-test.sh's `docker "
                          "network connect` (peers cannot resolve it any more)."),
        click.option("--check-timeout", type=click.FloatRange(min=1), default=300.0,
                     show_default=True, help="Wall-clock budget of the linearizability search."),
        click.option("--unsafe-stale-reads", is_flag=True, hidden=True,
                     help="TEST ONLY: start the nodes with --unsafe-stale-reads."),
        click.option("--unsafe-counters-without-sessions", is_flag=True, hidden=True,
                     help="TEST ONLY: the counter clients retry without a session."),
        click.option("--unsafe-watch-drop", type=click.IntRange(min=0), default=0, hidden=True,
                     help="TEST ONLY: watcher 0 forgets every N-th change (the watch check "
                          "must find the gap)."),
        click.option("--quiet", is_flag=True, help="No progress lines; the summary only."),
        click.option("--tls", is_flag=True,
                     help="A secured cluster: TLS on client and peer ports and a client "
                          "password (--net proxy, nft or none)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _run_options(**kw):  # type: ignore[no-untyped-def]
    import random
    import time
    from pathlib import Path

    from chaos.run import RunOptions
    from chaos.workload import Mix

    seed = kw["seed"] if kw["seed"] is not None else random.randrange(2**31)
    endpoints = tuple(filter(None, (e.strip() for e in kw["endpoints"].split(","))))
    if kw["net"] == "docker" and len(endpoints) != kw["nodes"]:
        raise click.BadParameter(f"--net docker needs --endpoints with {kw['nodes']} "
                                 "client addresses", param_hint="--endpoints")
    if endpoints and kw["net"] != "docker":
        raise click.BadParameter("attaching to a running cluster (--endpoints) needs "
                                 "--net docker: proxies and nftables rules must be wired "
                                 "into the nodes' --cluster lists from the start",
                                 param_hint="--endpoints")
    if kw["tls"] and kw["net"] in ("docker", "netns"):
        raise click.BadParameter("--tls works with --net proxy, nft or none",
                                 param_hint="--tls")
    # An attached cluster keeps the keys of earlier runs: fresh ones for this run.
    prefix = f"chaos-{seed}-{int(time.time())}-k" if kw["net"] == "docker" else "k"
    return RunOptions(
        key_prefix=prefix, nodes=kw["nodes"], duration=kw.get("duration", 60.0),
        nemeses=kw.get("nemeses", ()), clients=kw["clients"], keys=kw["keys"], seed=seed,
        out=Path(kw["out"] or _default_out()), net=kw["net"], rate=kw["rate"],
        op_timeout=kw["op_timeout"], unsafe_stale_reads=kw["unsafe_stale_reads"],
        endpoints=endpoints, project=kw["project"], docker_network=kw["docker_network"],
        engine=kw["engine"], reconnect=kw["reconnect"],
        check_timeout=kw["check_timeout"], quiet=kw["quiet"], counters=kw["counters"],
        mix=Mix(expiring=kw["expiring"]),
        unsafe_counters_without_sessions=kw["unsafe_counters_without_sessions"],
        tls=kw["tls"], watchers=kw["watchers"], unsafe_watch_drop=kw["unsafe_watch_drop"],
    )


def _execute(opts, args_for_netns):  # type: ignore[no-untyped-def]
    """Run ``opts`` here, or re-executed in a private network namespace for --net nft."""
    from chaos import nft
    from chaos.run import execute

    if opts.net in ("nft", "netns") and not nft.in_private_netns():
        try:
            code = nft.reexec_in_netns(args_for_netns, opts.net)
        except nft.NftError as exc:
            raise click.ClickException(str(exc)) from None
        raise SystemExit(code)
    from chaos.run import Terminated

    try:
        return execute(opts)
    except nft.NftError as exc:
        raise click.ClickException(str(exc)) from None
    except Terminated as exc:
        click.echo(f"raftkv-chaos: stopped by {exc}; every node and rule was torn down",
                   err=True)
        raise SystemExit(143) from None
    except KeyboardInterrupt:
        click.echo("raftkv-chaos: interrupted; every node and rule was torn down", err=True)
        raise SystemExit(130) from None


@main.command()
@click.option("--duration", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds of workload under faults.")
@click.option("--nemesis", "nemesis_text", default="kill,pause,partition", show_default=True,
              help="Comma-separated: kill, kill-leader, pause, partition (isolate-leader, "
                   "isolate-follower, split, bridge), one-way, latency, member (replace a "
                   "node by an empty one under a new id; grow to +2 nodes and shrink back); "
                   "all; none. member needs --net none: the proxy and nft backends give each "
                   "node its own address for each peer, while a membership change puts one "
                   "address per member in the log for everyone (all skips it there). "
                   "disk-full (root only, not in all): each node's data directory on its own "
                   "32 MiB tmpfs; the fault fills one node's to the last 4 KiB. "
                   "Traffic faults (not in all; local backends): hostile (malformed and "
                   "hostile traffic at both ports of every node; the nodes get a peer "
                   "secret), fd-exhaust, slow-reader, huge-value; resources = disk-full, "
                   "fd-exhaust, slow-reader, huge-value.")
@_common_run_options
def run(duration: float, nemesis_text: str, **kw: object) -> None:
    """Run real nodes under faults and check the history.

    Starts NODES real `raftkv serve` processes on loopback (own data directories), waits for
    a leader, runs CLIENTS concurrent clients (reads, writes of unique values, CAS) while a
    seeded schedule of faults is injected and healed, then reads every key once more and
    checks the history: linearizability per key, durability (no acknowledged write lost),
    availability per fault kind, election and write latency. Writes history.jsonl,
    summary.json, summary.txt and timeline.png (with matplotlib) to --out. Everything is torn
    down at the end, whatever happens. Exit 0 only if every check held (1: a check failed,
    2: only the linearizability search ran out of budget).
    """
    from chaos.nemesis import parse_nemeses
    from chaos.run import options_to_args

    try:
        nemeses = parse_nemeses(nemesis_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--nemesis") from None
    named = {p.strip() for p in nemesis_text.split(",")}
    if "member" in named and kw["net"] != "none":
        raise click.BadParameter(
            f"the member nemesis needs --net none, not --net {kw['net']}: membership changes "
            "put one peer address per member in the log for every node, but with proxy and "
            "nft each node reaches each peer at its own address (a proxy, a per-link port) "
            "and docker's nodes are fixed; --net none has no network faults, so combine "
            "member with kill, kill-leader or pause", param_hint="--nemesis")
    opts = _run_options(duration=duration, nemeses=nemeses, **kw)
    result = _execute(opts, options_to_args(opts))
    from chaos.report import render

    click.echo(render(result))
    raise SystemExit(result.exit_code)


@main.command()
@click.option("--target", type=click.Choice(["leader", "follower"]), default="leader",
              show_default=True, help="Which node to cut off.")
@click.option("--before", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds of writes before the cut.")
@click.option("--delay", type=click.FloatRange(min=1), default=15.0, show_default=True,
              help="Seconds the node stays cut off before it is reconnected.")
@click.option("--after", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Seconds of writes after the reconnect.")
@_common_run_options
def partition(target: str, before: float, delay: float, after: float, **kw: object) -> None:
    """Cut one node off, keep writing, reconnect it: the partition-test.sh scenario.

    Starts a cluster (or attaches to one: --endpoints with --net docker), waits for a
    leader, writes through every node, cuts the leader (or a follower) off for --delay
    seconds, reconnects it, and reports uptime during the partition, how soon a new leader
    served writes and how soon the cut-off node served again. Exit 0 only if the history
    checks held and the node came back.
    """
    from chaos import partition as scenario
    from chaos.report import render

    opts = scenario.options(_run_options(**kw), target, before, delay, after)
    args = ["partition", "--target", target, "--before", str(before), "--delay", str(delay),
            "--after", str(after), "--nodes", str(opts.nodes), "--clients", str(opts.clients),
            "--keys", str(opts.keys), "--seed", str(opts.seed), "--out", str(opts.out),
            "--net", opts.net, "--rate", str(opts.rate), "--op-timeout", str(opts.op_timeout),
            "--reconnect", opts.reconnect, "--watchers", str(opts.watchers)]
    result = _execute(opts, args + (["--quiet"] if opts.quiet else []))
    report = scenario.analyse(result)
    click.echo(render(result).rsplit("\n", 1)[0])
    click.echo(report.render())
    (opts.out / "partition.txt").write_text(report.render() + "\n")
    ok = result.exit_code == 0 and report.ok
    click.echo(("PASS: " if ok else "FAIL: ") + result.verdict.split(": ", 1)[1]
               + ("" if report.rejoined else "; the cut-off node did not come back")
               + ("" if report.ok or not report.rejoined else "; uptime below 99.9%"))
    raise SystemExit(0 if ok else (result.exit_code or 1))


@main.command()
@click.argument("history", type=click.Path(exists=True, dir_okay=False))
@click.option("--budget", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Most search states to explore per key before answering unknown.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
def check(history: str, budget: int, as_json: bool) -> None:
    """Re-check a saved history for linearizability.

    Exit 0 if every key is linearizable, 1 on a violation, 2 if the search budget ran out
    (or the history cannot be read).
    """
    import json

    from chaos import history as hist
    from chaos.linearizability import check as check_history

    try:
        ops = hist.load(history)
    except hist.HistoryError as exc:
        raise click.BadParameter(str(exc), param_hint="HISTORY") from None
    result = check_history(ops, max_states=budget)
    if as_json:
        click.echo(json.dumps({"keys": [k.to_json() for k in result.keys],
                               "verdict": result.verdict, "summary": result.summary()}))
    else:
        click.echo(result.render())
    click.get_current_context().exit({"ok": 0, "violation": 1, "unknown": 2}[result.verdict])


@main.command()
@click.option("--inputs", "count", type=click.IntRange(min=1), default=1_000_000,
              show_default=True, help="Inputs per target.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--target", "targets", multiple=True, type=click.Choice(list(fuzzing.TARGETS)),
              help="Only these decoders (default: all).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Save each finding's input here.")
def fuzz(count: int, seed: int, targets: tuple[str, ...], out_dir: str | None) -> None:
    """Feed generated and mutated inputs to every pure decoder (peer frames and records,
    RESP commands and replies, log entries, snapshots, WAL segments): each must decode or
    raise its declared error. Exit 0 only if nothing else was raised."""
    findings = fuzzing.campaign(list(targets or fuzzing.TARGETS), count, seed, out_dir,
                                click.echo)
    raise SystemExit(1 if findings else 0)


@main.group()
def image() -> None:
    """The raftkv:latest container image."""


@image.command("build")
@click.option("--engine", type=click.Choice(["docker", "podman"]), default=None,
              help="Container engine (default: $RAFTKV_ENGINE, else podman where installed, "
                   "else docker).")
@click.option("--base", default=None,
              help="Base image (default: python:3.11-slim if present or pullable, else a "
                   "local debootstrap image, localhost/raftkv-base:bookworm, made once).")
@click.option("--tag", default="raftkv:latest", show_default=True, help="Image name.")
@click.option("--force", is_flag=True,
              help="Build even if the image was built from the same sources already.")
def image_build(engine: str | None, base: str | None, tag: str, force: bool) -> None:
    """Build the node image anywhere, even without a container registry.

    podman: writes /etc/containers/containers.conf (runc, lowered ulimits) if missing.
    Makes the base image with debootstrap from apt's own Debian mirror when no registry
    answers, builds the project's wheels on the host and installs them into a venv in the
    image. Prints the time each part took.
    """
    from chaos import image as img

    try:
        result = img.build(engine or img.engine_default(), base, tag, force=force)
    except img.ImageError as exc:
        raise click.ClickException(str(exc)) from None
    base_note = (f"built in {result.base_seconds:.1f} s" if result.base_seconds
                 else "already there")
    if not result.built:
        click.echo(f"{tag} is up to date (sources unchanged; --force rebuilds)")
        return
    click.echo(f"built {tag} from {result.base} in {result.image_seconds:.1f} s "
               f"(base {base_note})")
