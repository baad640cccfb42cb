"""``raftkv``: run a node, run a local cluster, look at a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from raftkv import __version__
from raftkv.certs import create as create_certs
from raftkv.node.cluster_id import valid_cluster_id
from raftkv.node.security import SecurityConfigError, security_warnings

LOCAL_ENDPOINTS = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"


def not_yet(what: str, issue: str) -> None:
    """Fail clearly for a subcommand whose issue has not landed yet."""
    raise click.ClickException(f"{what} is not implemented yet ({issue}).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftkv")
def main() -> None:
    """RaftKV server and cluster administration."""


def _env(name: str) -> str:
    return f"RAFTKV_{name}"


@main.command()
@click.option("--id", "node_id", type=click.IntRange(min=1), required=True, envvar=_env("ID"),
              help="This node's id (an integer >= 1, unique in the cluster).")
@click.option("--client-addr", default="127.0.0.1:7001", show_default=True,
              envvar=_env("CLIENT_ADDR"), help="Listen address of the Redis-protocol port.")
@click.option("--peer-addr", default="127.0.0.1:7101", show_default=True,
              envvar=_env("PEER_ADDR"), help="Listen address of the Raft peer port.")
@click.option("--cluster", default="", envvar=_env("CLUSTER"),
              help="Initial voters: 1=HOST:PORT,2=HOST:PORT,... (their peer addresses). "
                   "Not needed with --join.")
@click.option("--join", default="", envvar=_env("JOIN"),
              help="Join a running cluster: HOST:PORT[,HOST:PORT...] client addresses of "
                   "members. Only for an empty data directory (ignored once it has state).")
@click.option("--learner", is_flag=True, envvar=_env("LEARNER"),
              help="With --join: stay a non-voting learner (RAFT PROMOTE makes it a voter).")
@click.option("--data-dir", required=True, envvar=_env("DATA_DIR"), type=click.Path(),
              help="Where this node keeps its log and snapshots.")
@click.option("--cluster-id", default="", envvar=_env("CLUSTER_ID"),
              help="Override the cluster id (peers with another one are refused). Default: "
                   "kept in the data directory; a --join node learns it from the cluster; "
                   "a --cluster bootstrap derives it from the member list.")
@click.option("--peer-secret-file", default="", envvar=_env("PEER_SECRET_FILE"),
              type=click.Path(dir_okay=False),
              help="A secret shared by every member (at least 16 bytes, e.g. `openssl rand "
                   "-hex 32`): peers prove they know it on every connection.")
@click.option("--peer-tls-cert", default="", envvar=_env("PEER_TLS_CERT"),
              type=click.Path(dir_okay=False), help="Mutual TLS between peers: this node's "
              "certificate (PEM; used as server and as client certificate).")
@click.option("--peer-tls-key", default="", envvar=_env("PEER_TLS_KEY"),
              type=click.Path(dir_okay=False), help="The private key of --peer-tls-cert.")
@click.option("--peer-tls-ca", default="", envvar=_env("PEER_TLS_CA"),
              type=click.Path(dir_okay=False),
              help="The CA that signs every member's peer certificate (both ways checked).")
@click.option("--insecure", is_flag=True, envvar=_env("INSECURE"),
              help="Allow a non-loopback --client-addr/--peer-addr without peer "
                   "authentication (--peer-secret-file or --peer-tls-*).")
@click.option("--advertise-client-addr", default="", envvar=_env("ADVERTISE_CLIENT_ADDR"),
              help="Client address other nodes tell clients (default: --client-addr).")
@click.option("--advertise-peer-addr", default="", envvar=_env("ADVERTISE_PEER_ADDR"),
              help="Peer address announced to other nodes (default: --peer-addr).")
@click.option("--tick-ms", default=10.0, show_default=True, envvar=_env("TICK_MS"),
              type=click.FloatRange(min=1), help="Length of one logical tick.")
@click.option("--heartbeat-ticks", default=5, show_default=True, envvar=_env("HEARTBEAT_TICKS"),
              type=click.IntRange(min=1))
@click.option("--election-ticks", default=15, show_default=True, envvar=_env("ELECTION_TICKS"),
              type=click.IntRange(min=2),
              help="Election timeout is random in [N, 2N) ticks.")
@click.option("--fsync", type=click.Choice(["always", "never"]), default="always",
              show_default=True, envvar=_env("FSYNC"),
              help="'never' is for benchmarks only: a crash can lose acknowledged writes.")
@click.option("--snapshot-entries", default=100_000, show_default=True,
              envvar=_env("SNAPSHOT_ENTRIES"), type=click.IntRange(min=0),
              help="Snapshot and compact the log every N applied entries (0: only on "
                   "RAFT SNAPSHOT).")
@click.option("--max-clients", default=10_000, show_default=True, envvar=_env("MAX_CLIENTS"),
              type=click.IntRange(min=1))
@click.option("--idle-timeout", default=0.0, show_default=True, envvar=_env("IDLE_TIMEOUT"),
              type=click.FloatRange(min=0), help="Close idle client connections (0: never).")
@click.option("--max-request-bytes", default=8 * 1024 * 1024, show_default=True,
              envvar=_env("MAX_REQUEST_BYTES"), type=click.IntRange(min=1024),
              help="Largest client request (all arguments of one command together).")
@click.option("--unsafe-stale-reads", is_flag=True, hidden=True,
              envvar=_env("UNSAFE_STALE_READS"),
              help="TEST ONLY: followers answer reads from local state (not linearizable).")
@click.option("-v", "--verbose", count=True, help="-v: the Raft story; -vv: debug.")
def serve(node_id: int, client_addr: str, peer_addr: str, cluster: str, join: str,
          learner: bool, unsafe_stale_reads: bool, verbose: int, **options: Any) -> None:
    """Run one RaftKV node. Every flag also reads RAFTKV_<FLAG> (e.g. RAFTKV_ID)."""
    from raftkv.log import setup_logging
    from raftkv.node.run import run_node
    from raftkv.node.settings import NodeSettings, parse_addr, parse_cluster

    seeds = tuple(_split(join))
    try:
        members = parse_cluster(cluster) if cluster or not seeds else {}
        parse_addr(client_addr)
        parse_addr(peer_addr)
        for seed in seeds:
            parse_addr(seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if not seeds and node_id not in members:
        raise click.BadParameter(f"--id {node_id} is not in --cluster {cluster}")
    if learner and not seeds:
        raise click.BadParameter("--learner only applies with --join")
    check_peer_security(client_addr, peer_addr, options)
    if options["cluster_id"] and not valid_cluster_id(options["cluster_id"]):
        raise click.BadParameter("1 to 64 of A-Z a-z 0-9 . _ -", param_hint="--cluster-id")
    setup_logging(verbose)
    settings = NodeSettings(
        node_id=node_id, client_addr=client_addr, peer_addr=peer_addr, cluster=members,
        join=seeds, learner=learner, unsafe_stale_reads=unsafe_stale_reads,
        **options,  # every other flag is a NodeSettings field of the same name
    )
    if unsafe_stale_reads:
        click.echo("WARNING: --unsafe-stale-reads: reads on followers may be stale "
                   "(a test-only switch)", err=True)
    run_node(settings)


@main.command()
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9))
@click.option("--data-dir", default="./raftkv-data", show_default=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--fsync", type=click.Choice(["always", "never"]), default="always",
              show_default=True)
@click.option("--port-base", default=7000, show_default=True, type=click.IntRange(1, 65000),
              help="Node N gets client port BASE+N and peer port BASE+100+N.")
@click.option("-v", "--verbose", count=True, help="Passed to every node.")
def up(nodes: int, data_dir: str, host: str, fsync: str, port_base: int, verbose: int) -> None:
    """Start a local cluster: client ports 7001.., peer ports 7101..; Ctrl-C stops it."""
    from raftkv.local_cluster import run_local_cluster

    run_local_cluster(nodes=nodes, data_dir=data_dir, host=host, fsync=fsync, verbose=verbose,
                      base=port_base)


@main.group()
def certs() -> None:
    """Certificates for trying TLS out (a CA, a node and a client certificate)."""


@certs.command("create")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for ca.crt/key, node.crt/key, client.crt/key (keys 0600).")
@click.option("--hosts", default="127.0.0.1,localhost", show_default=True,
              help="Names and IPs the node certificate is valid for (comma separated).")
def certs_create(out: str, hosts: str) -> None:
    """Make a CA and certificates signed by it; never overwrites a file."""
    try:
        written = create_certs(Path(out), tuple(_split(hosts)))
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("\n".join(str(p) for p in written))
    click.echo(f"Peer TLS: raftkv serve ... --peer-tls-cert {out}/node.crt "
               f"--peer-tls-key {out}/node.key --peer-tls-ca {out}/ca.crt")


@main.command()
@click.option("--endpoints", default=LOCAL_ENDPOINTS, show_default=True,
              envvar="RAFTKV_ENDPOINTS", help="Client addresses, comma separated.")
def status(endpoints: str) -> None:
    """One line per node: role, term, commit/applied index, lag behind the leader."""
    from raftkv.probe import info_raft

    rows = []
    for addr in _split(endpoints):
        try:
            rows.append((addr, info_raft(addr)))
        except (OSError, ConnectionError) as exc:
            rows.append((addr, {"error": str(exc)}))
    leader_commit = max((int(i.get("commit_index", 0)) for _, i in rows
                         if i.get("role") == "leader"), default=None)
    click.echo(f"{'ADDRESS':<22}{'ID':>4}  {'ROLE':<10}{'TERM':>6}{'COMMIT':>9}"
               f"{'APPLIED':>9}{'LAG':>7}")
    for addr, info in rows:
        if "error" in info:
            click.echo(f"{addr:<22}{'-':>4}  {'down':<10}  ({info['error']})")
            continue
        applied = int(info.get("last_applied", 0))
        lag = "-" if leader_commit is None else str(max(0, leader_commit - applied))
        click.echo(f"{addr:<22}{info.get('node_id', '?'):>4}  {info.get('role', '?'):<10}"
                   f"{info.get('term', '?'):>6}{info.get('commit_index', '?'):>9}"
                   f"{applied:>9}{lag:>7}")
    if not any("error" not in info for _, info in rows):
        raise SystemExit(1)


@main.group()
def member() -> None:
    """List, add, remove and promote cluster members (like etcdctl member).

    Any endpoint takes a change and forwards it to the leader; the command returns once the
    change is committed. A new node is added as a learner and promoted automatically once
    it has caught up, unless added with --learner."""


def _endpoints_option(f: Any) -> Any:
    return click.option("--endpoints", default=LOCAL_ENDPOINTS, show_default=True,
                        envvar="RAFTKV_ENDPOINTS",
                        help="Client addresses of members, comma separated.")(f)


@member.command("list")
@_endpoints_option
def member_list(endpoints: str) -> None:
    """The members, their peer address, role, and which one leads."""
    from raftkv.member_cli import print_members

    print_members(_split(endpoints))


@member.command("add")
@click.argument("node_id", type=click.IntRange(min=1))
@click.argument("peer_addr")
@click.option("--learner", is_flag=True, help="Keep it a learner (no automatic promotion).")
@click.option("--timeout", default=15.0, show_default=True, type=click.FloatRange(min=0),
              help="Keep retrying while the cluster says TRYAGAIN for this long.")
@_endpoints_option
def member_add(node_id: int, peer_addr: str, learner: bool, timeout: float,
               endpoints: str) -> None:
    """Add node NODE_ID (peer address PEER_ADDR) as a learner; start it with --join."""
    from raftkv.member_cli import change

    words = ["ADDNODE", str(node_id), peer_addr] + (["LEARNER"] if learner else [])
    change(_split(endpoints), words, timeout)


@member.command("remove")
@click.argument("node_id", type=click.IntRange(min=1))
@click.option("--timeout", default=15.0, show_default=True, type=click.FloatRange(min=0))
@_endpoints_option
def member_remove(node_id: int, timeout: float, endpoints: str) -> None:
    """Remove node NODE_ID (a voter or a learner; the leader too)."""
    from raftkv.member_cli import change

    change(_split(endpoints), ["REMOVENODE", str(node_id)], timeout)


@member.command("promote")
@click.argument("node_id", type=click.IntRange(min=1))
@click.option("--timeout", default=15.0, show_default=True, type=click.FloatRange(min=0))
@_endpoints_option
def member_promote(node_id: int, timeout: float, endpoints: str) -> None:
    """Make learner NODE_ID a voter (once it has caught up with the leader)."""
    from raftkv.member_cli import change

    change(_split(endpoints), ["PROMOTE", str(node_id)], timeout)


def check_peer_security(client_addr: str, peer_addr: str, options: dict[str, Any]) -> None:
    """Peer-security flags, checked before anything starts (raftkv.node.security)."""
    try:
        warnings = security_warnings(client_addr, peer_addr, options)
    except SecurityConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    for warning in warnings:
        click.echo(f"WARNING: {warning}", err=True)


def _split(endpoints: str) -> list[str]:
    return [e.strip() for e in endpoints.split(",") if e.strip()]
