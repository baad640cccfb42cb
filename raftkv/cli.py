"""``raftkv``: run a node, run a local cluster, look at a cluster."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import trio

import raftkv.serve
from client.security import from_env as security_from_env
from client.status import cluster_status, render_table, status_exit_code, to_json
from raftkv import __version__
from raftkv.backup import take_backup
from raftkv.backup_file import BackupError, verify_backup
from raftkv.certs import create as create_certs
from raftkv.cli_types import ClusterId, FiniteFloatRange
from raftkv.config_file import config_option
from raftkv.kv import MAX_TRANSACTION_COMMANDS
from raftkv.kv.features import DEFAULT_BUDGET, MAX_BUDGET, MIN_BUDGET
from raftkv.kv.key_cap import DEFAULT_MAX_KEYS_PER_COMMAND
from raftkv.kv.notify import parse_flags
from raftkv.local_cluster import MAX_UP_NODES, run_local_cluster
from raftkv.local_secrets import BadFiles as BadSecretFiles
from raftkv.local_secrets import init as init_secrets
from raftkv.log import setup_logging
from raftkv.member_cli import change, print_members
from raftkv.node.cluster_id import stored_cluster_id
from raftkv.node.security import SecurityConfigError, security_warnings
from raftkv.node.settings import NodeSettings, check_own_entry, parse_cluster
from raftkv.node.sizes import MAX_REQUEST_BYTES
from raftkv.recover import recover as do_recover
from raftkv.restore import DEFAULT_BUMP, RestoreError
from raftkv.restore import restore as do_restore
from raftkv.server.acl import AccessControl, ACLError
from raftkv.server.client_tls import ClientTLSError, client_tls_context
from raftkv.server.http_auth import MetricsSecurity, MetricsSecurityError, metrics_warnings
from raftkv.server.protected_mode import ProtectedModeError, client_auth_warnings
from raftkv.storage import DiskStorageError
from wire.addr import parse_addr

LOCAL_ENDPOINTS = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
# A tick longer than a minute makes elections take many minutes: a typo, not a setting.
MAX_TICK_MS = 60_000.0
# etcd refuses an election timeout over 50 s: a node that never elects looks healthy and
# serves nothing (``--election-ticks 2**70`` started, listened and never elected a leader).
MAX_ELECTION_TIMEOUT_MS = 50_000.0
# A leader deferring its snapshots holds up to N x --snapshot-entries entries in memory and
# on disk: a mistyped large N is a leader whose log grows until the disk is full.
MAX_LEADER_DEFER = 16


def not_yet(what: str, issue: str) -> None:
    """Fail clearly for a subcommand whose issue has not landed yet."""
    raise click.ClickException(f"{what} is not implemented yet ({issue}).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftkv")
def main() -> None:
    """RaftKV server and cluster administration."""


def _env(name: str) -> str:
    return f"RAFTKV_{name}"


def _notify_flags(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--notify-keyspace-events: Redis's flag letters, refused at start if unknown."""
    if parse_flags(value) is None:
        raise click.BadParameter("unknown flag letter: use some of Ag$lshzxeKEtmdn")
    return value


@main.command()
@config_option
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
@click.option("--cluster-id", default="", envvar=_env("CLUSTER_ID"), type=ClusterId(True),
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
@click.option("--requirepass", default="", envvar=_env("REQUIREPASS"), metavar="PASSWORD",
              help="Clients must AUTH with this password (Redis's requirepass; the default "
                   "user's). Prefer the env var: a flag shows in `ps`.")
@click.option("--acl-file", default="", envvar=_env("ACL_FILE"), type=click.Path(dir_okay=False),
              help="ACL users in Redis's ACL file syntax (`user NAME on >pass ~* +@all`); "
                   "read at start and on ACL LOAD.")
@click.option("--tls-cert", default="", envvar=_env("TLS_CERT"), type=click.Path(dir_okay=False),
              help="The client port speaks TLS only, with this certificate (PEM).")
@click.option("--tls-key", default="", envvar=_env("TLS_KEY"), type=click.Path(dir_okay=False),
              help="The private key of --tls-cert.")
@click.option("--tls-ca", default="", envvar=_env("TLS_CA"), type=click.Path(dir_okay=False),
              help="The CA that signs client certificates (for --tls-client-auth).")
@click.option("--tls-client-auth", is_flag=True, envvar=_env("TLS_CLIENT_AUTH"),
              help="Clients must present a certificate signed by --tls-ca (Redis's "
                   "tls-auth-clients yes).")
@click.option("--insecure", is_flag=True, envvar=_env("INSECURE"),
              help="Allow a non-loopback --client-addr/--peer-addr without peer "
                   "authentication (--peer-secret-file or --peer-tls-*).")
@click.option("--advertise-client-addr", default="", envvar=_env("ADVERTISE_CLIENT_ADDR"),
              help="Client address other nodes tell clients (default: --client-addr).")
@click.option("--advertise-peer-addr", default="", envvar=_env("ADVERTISE_PEER_ADDR"),
              help="Peer address announced to other nodes (default: --peer-addr).")
@click.option("--tick-ms", default=10.0, show_default=True, envvar=_env("TICK_MS"),
              type=FiniteFloatRange(min=1, max=MAX_TICK_MS),
              help="Length of one logical tick (at most 60000).")
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
@click.option("--snapshot-stagger/--no-snapshot-stagger", default=False, show_default=True,
              envvar=_env("SNAPSHOT_STAGGER"),
              help="Followers take their automatic snapshots at offsets from the leader's "
                   "(by node id) instead of at the same index. Off until measured under "
                   "load (README: Snapshots that cannot starve the loop).")
@click.option("--snapshot-leader-defer", default=1, show_default=True,
              envvar=_env("SNAPSHOT_LEADER_DEFER"),
              type=click.IntRange(min=1, max=MAX_LEADER_DEFER),
              help="The leader takes its automatic snapshot only after N x "
                   "--snapshot-entries entries (sooner when used memory passes half of "
                   "--maxmemory): its loop serves everyone, and a snapshot stalls it. "
                   "Followers keep the schedule; 1 (default): the leader does too. Opt-in "
                   "until measured on a quiet machine (README: Limits).")
@click.option("--snapshot-fork/--snapshot-thread", default=True, show_default=True,
              envvar=_env("SNAPSHOT_FORK"),
              help="Encode this node's snapshots in a forked child, as Redis's BGSAVE does "
                   "(its own GIL; the node's RSS does not grow: the file is written as the "
                   "child's bytes come), or in a worker thread beside the event loop (a copy "
                   "of the large maps, ~10 MB at 100k keys, in the node while it encodes). "
                   "The child's pages turn private as it reads them (reference counts): "
                   "while it encodes the host needs up to the node's heap again.")
@click.option("--watch-retention-entries", default=100_000, show_default=True,
              envvar=_env("WATCH_RETENTION_ENTRIES"), type=click.IntRange(min=1),
              help="The change feed (XREAD __raftkv:changes) keeps the changes of the last N "
                   "log entries, and at most N changes, whatever the snapshots; older ids "
                   "answer 'compacted'.")
@click.option("--watch-retention-bytes", default=64 * 1024 * 1024, show_default=True,
              envvar=_env("WATCH_RETENTION_BYTES"), type=click.IntRange(min=1024),
              help="And at most this many bytes of them (keys, values, ~96 bytes each).")
@click.option("--watch-max-blocked", default=1000, show_default=True,
              envvar=_env("WATCH_MAX_BLOCKED"), type=click.IntRange(min=0),
              help="XREAD ... BLOCK readers waiting at once on this node; past it a BLOCK "
                   "answers -ERR (0: BLOCK is refused).")
@click.option("--max-clients", default=10_000, show_default=True, envvar=_env("MAX_CLIENTS"),
              type=click.IntRange(min=1))
@click.option("--idle-timeout", default=0.0, show_default=True, envvar=_env("IDLE_TIMEOUT"),
              type=FiniteFloatRange(min=0), help="Close idle client connections (0: never).")
@click.option("--enable-scripts/--no-scripts", default=True, show_default=True,
              envvar=_env("ENABLE_SCRIPTS"),
              help="Allow EVAL/EVALSHA/SCRIPT (Lua; bounded per script, see the README's "
                   "scripts section). --no-scripts (or RAFTKV_ENABLE_SCRIPTS=0, or "
                   "enable-scripts = false in --config) refuses them. The same on every node.")
@click.option("--notify-keyspace-events", default="", envvar=_env("NOTIFY_KEYSPACE_EVENTS"),
              callback=_notify_flags,
              help="Redis's keyspace notification flags (e.g. KEA, Ex); per node, "
                   "CONFIG SET notify-keyspace-events changes them (default: none).")
@click.option("--max-request-bytes", default=8 * 1024 * 1024, show_default=True,
              envvar=_env("MAX_REQUEST_BYTES"),
              type=click.IntRange(min=1024, max=MAX_REQUEST_BYTES),
              help="Largest client request (one command as sent, all arguments "
                   "together); larger ones get -ERR and the connection is closed.")
@click.option("--max-keys-per-command", default=DEFAULT_MAX_KEYS_PER_COMMAND,
              show_default=True, envvar=_env("MAX_KEYS_PER_COMMAND"),
              type=click.IntRange(min=1, max=MAX_TRANSACTION_COMMANDS),
              help="Keys one command may name (MSET, DEL, MGET...), and all the commands "
                   "of one MULTI/EXEC together (each at least 1); more get -ERR before "
                   "they are proposed: one entry applies in one step of the event loop. "
                   "Set it alike on every node.")
@click.option("--write-run", default=32, show_default=True, envvar=_env("WRITE_RUN"),
              type=click.IntRange(min=1, max=MAX_TRANSACTION_COMMANDS),
              help="As leader, propose up to this many of a client's pipelined plain "
                   "one-key writes (SET, INCR...) as one log entry, and gather runs of "
                   "several clients into one (never more than --max-keys-per-command "
                   "commands); 1: every write its own entry.")
@click.option("--script-budget", default=DEFAULT_BUDGET, show_default=True,
              envvar=_env("SCRIPT_BUDGET"), type=click.IntRange(min=MIN_BUDGET, max=MAX_BUDGET),
              help="Instruction units the scripts of one entry may spend (a full budget holds "
                   "every replica's apply a few ms); the leader records its value in each "
                   "entry once every member reads it, so nodes may differ without diverging. "
                   "Also this node's EVAL_RO budget.")
@click.option("--client-query-buffer-limit", default=0, show_default=True,
              envvar=_env("CLIENT_QUERY_BUFFER_LIMIT"), type=click.IntRange(min=0),
              help="Bytes of a client's commands read but not yet answered; past it the "
                   "port stops reading from that client (0: 4 x --max-request-bytes).")
@click.option("--client-output-buffer-limit", default=64 * 1024 * 1024, show_default=True,
              envvar=_env("CLIENT_OUTPUT_BUFFER_LIMIT"), type=click.IntRange(min=0),
              help="Bytes of replies owed to a client and not yet sent; past it the "
                   "client is disconnected (0: unlimited).")
@click.option("--client-output-stall-timeout", default=10.0, show_default=True,
              envvar=_env("CLIENT_OUTPUT_STALL_TIMEOUT"), type=FiniteFloatRange(min=0.1),
              help="Over half the output-buffer limit the port reads no more commands from "
                   "a client; a client that reads nothing for this long is disconnected.")
@click.option("--client-buffer-total", default=0, show_default=True,
              envvar=_env("CLIENT_BUFFER_TOTAL"), type=click.IntRange(min=0),
              help="Bytes of all clients' query and output buffers together; past it the "
                   "client holding the most is disconnected (Redis's maxmemory-clients). "
                   "0: a quarter of --maxmemory if set, else 1 GiB.")
@click.option("--max-new-clients", default=1024, show_default=True,
              envvar=_env("MAX_NEW_CLIENTS"), type=click.IntRange(min=1),
              help="Connections that have not yet sent a complete command.")
@click.option("--first-command-timeout", default=10.0, show_default=True,
              envvar=_env("FIRST_COMMAND_TIMEOUT"), type=FiniteFloatRange(min=0.1),
              help="Seconds a new connection has to send its first complete command.")
@click.option("--maxmemory", default=0, show_default=True, envvar=_env("MAXMEMORY"),
              type=click.IntRange(min=0),
              help="RSS in bytes above which writes that grow memory answer -OOM "
                   "(Redis's noeviction); reads and deletes still work (0: no limit).")
@click.option("--metrics-addr", default="", envvar=_env("METRICS_ADDR"),
              help="HOST:PORT of the HTTP port serving /metrics (Prometheus), /livez and "
                   "/readyz (default: off).")
@click.option("--metrics-tls-cert", default="", envvar=_env("METRICS_TLS_CERT"),
              type=click.Path(dir_okay=False),
              help="The metrics port speaks HTTPS with this certificate (default: the "
                   "client port's --tls-cert when it has one).")
@click.option("--metrics-tls-key", default="", envvar=_env("METRICS_TLS_KEY"),
              type=click.Path(dir_okay=False), help="The private key of --metrics-tls-cert.")
@click.option("--metrics-tls-ca", default="", envvar=_env("METRICS_TLS_CA"),
              type=click.Path(dir_okay=False),
              help="The CA of scrapers' certificates (default: --tls-ca).")
@click.option("--metrics-tls-client-auth", is_flag=True, envvar=_env("METRICS_TLS_CLIENT_AUTH"),
              help="Every request to the metrics port (probes too) must present a client "
                   "certificate signed by --metrics-tls-ca.")
@click.option("--metrics-plain-http", is_flag=True, envvar=_env("METRICS_PLAIN_HTTP"),
              help="Keep the metrics port plain HTTP even though the client port has TLS.")
@click.option("--metrics-token-file", default="", envvar=_env("METRICS_TOKEN_FILE"),
              type=click.Path(dir_okay=False),
              help="GET /metrics needs this token (Authorization: Bearer TOKEN, or basic "
                   "auth with it as password); /livez and /readyz stay open.")
@click.option("--ready-max-lag", default=1000, show_default=True,
              envvar=_env("READY_MAX_LAG"), type=click.IntRange(min=0),
              help="/readyz answers 503 while applying trails the commit index by more.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, envvar=_env("LOG_FORMAT"),
              help="json: one JSON object per line (ts, level, logger, msg, node_id, term, "
                   "fields).")
@click.option("--unsafe-stale-reads", is_flag=True, hidden=True,
              envvar=_env("UNSAFE_STALE_READS"),
              help="TEST ONLY: followers answer reads from local state (not linearizable).")
@click.option("-v", "--verbose", count=True, help="-v: the Raft story; -vv: debug.")
def serve(node_id: int, client_addr: str, peer_addr: str, cluster: str, join: str,
          learner: bool, unsafe_stale_reads: bool, verbose: int, **options: Any) -> None:
    """Run one RaftKV node. Every flag also reads RAFTKV_<FLAG> (e.g. RAFTKV_ID)."""
    seeds = tuple(_split(join))
    try:
        members = parse_cluster(cluster) if cluster or not seeds else {}
        parse_addr(client_addr)
        parse_addr(peer_addr)
        for seed in seeds:
            parse_addr(seed)
        if options["metrics_addr"]:
            parse_addr(options["metrics_addr"])
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if not seeds and node_id not in members:
        raise click.BadParameter(f"--id {node_id} is not in --cluster {cluster}")
    try:
        if not _holds_state(options["data_dir"]):
            check_own_entry(node_id, members, peer_addr, options["advertise_peer_addr"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if learner and not seeds:
        raise click.BadParameter("--learner only applies with --join")
    check_peer_security(client_addr, peer_addr, options)
    check_client_auth(client_addr, options)
    check_metrics_security(options)
    if options["heartbeat_ticks"] >= options["election_ticks"]:
        raise click.BadParameter(
            f"must be smaller than --election-ticks ({options['election_ticks']}): followers "
            "would time out between heartbeats", param_hint="--heartbeat-ticks")
    if options["election_ticks"] * options["tick_ms"] > MAX_ELECTION_TIMEOUT_MS:
        raise click.BadParameter(
            f"--election-ticks x --tick-ms is the election timeout; at most "
            f"{MAX_ELECTION_TIMEOUT_MS:.0f} ms, as in etcd (a node that never elects serves "
            "nothing)", param_hint="--election-ticks")
    setup_logging(verbose, fmt=options["log_format"], node_id=node_id)
    settings = NodeSettings(
        node_id=node_id, client_addr=client_addr, peer_addr=peer_addr, cluster=members,
        join=seeds, learner=learner, unsafe_stale_reads=unsafe_stale_reads,
        **options,  # every other flag is a NodeSettings field of the same name
    )
    if unsafe_stale_reads:
        click.echo("WARNING: --unsafe-stale-reads: reads on followers may be stale "
                   "(a test-only switch)", err=True)
    raftkv.serve.run_node(settings)


def _holds_state(data_dir: str) -> bool:
    """True if ``data_dir`` holds a node's state: the node restarts from it and ignores
    ``--cluster`` (README), so an own entry there that no longer matches (a unit file
    older than ``raftkv recover --peer-addr NEW``) must not stop it. An unreadable meta
    counts as state: the node's own open reports it."""
    try:
        return stored_cluster_id(data_dir) is not None
    except (DiskStorageError, OSError):
        return True


@main.command()
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, MAX_UP_NODES))
@click.option("--data-dir", default="./raftkv-data", show_default=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--fsync", type=click.Choice(["always", "never"]), default="always",
              show_default=True)
@click.option("--port-base", default=7000, show_default=True, type=click.IntRange(1, 63000),
              help="Node N gets client port BASE+N, peer port BASE+100+N, metrics port "
                   "BASE+2000+N.")
@click.option("--tls", is_flag=True,
              help="TLS on client, peer and metrics ports, a client password and a "
                   "/metrics token: certificates in DATA_DIR/certs, the password in "
                   "DATA_DIR/client-password, the token in DATA_DIR/metrics-token (made "
                   "once).")
@click.option("-v", "--verbose", count=True, help="Passed to every node.")
def up(nodes: int, data_dir: str, host: str, fsync: str, port_base: int, tls: bool,
       verbose: int) -> None:
    """Start a local cluster: client ports 7001.., peer 7101.., metrics 9001..; Ctrl-C stops it."""
    run_local_cluster(nodes=nodes, data_dir=data_dir, host=host, fsync=fsync, verbose=verbose,
                      base=port_base, tls=tls)


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


@main.group()
def secrets() -> None:
    """Everything a secured cluster needs, in one directory."""


@secrets.command("init")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for certificates, peer-secret, admin-password, users.acl, "
                   "metrics-token and ready (secrets 0600).")
@click.option("--hosts", default="127.0.0.1,localhost", show_default=True,
              help="Names and IPs the node certificate is valid for (comma separated).")
@click.option("--user", default="admin", show_default=True,
              help="The ACL user made with a random password (the default user is off).")
@click.option("--force", is_flag=True,
              help="Replace files that fail the checks (links are removed, never followed; "
                   "a bad certificate file remakes the whole set) instead of refusing.")
def secrets_init(out: str, hosts: str, user: str, force: bool) -> None:
    """Make what is missing in OUT (keeps what exists, so it can run at every start):
    a CA with node and client certificates, a peer secret, an ACL file with one admin
    user and its random password, a metrics token; `ready` is written last. What it
    keeps must pass the checks a node applies at start, be a regular file (not a link)
    and, for a secret, be 0600; otherwise it prints one line per bad file, writes
    nothing and exits 1 (or, with --force, replaces them)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", user):
        raise click.BadParameter("1 to 64 of A-Z a-z 0-9 _ . -", param_hint="--user")
    try:
        written = init_secrets(Path(out), tuple(_split(hosts)), user, force)
    except BadSecretFiles as exc:
        for line in exc.lines:
            click.echo(f"Error: {line}", err=True)
        raise click.ClickException(f"{out}: refusing to keep the files above, and not "
                                   "writing ready; fix or remove them, or run again with "
                                   "--force to replace them") from exc
    except (FileExistsError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("\n".join(str(p) for p in written) or f"{out}: complete, nothing to make")


@main.command()
@click.option("--endpoints", default=LOCAL_ENDPOINTS, show_default=True,
              envvar="RAFTKV_ENDPOINTS", help="Client addresses, comma separated.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("--timeout", default=1.0, show_default=True, type=FiniteFloatRange(min=0.01),
              help="How long each node has to answer.")
def status(endpoints: str, as_json: bool, timeout: float) -> None:
    """One line per node: id, role, term, commit/applied index, lag behind the leader.

    The same table (and --json) as `raftkv-cli status`. Exit status: 0 every node up and
    one leads, 1 some node down or no leader, 2 no node answered."""
    # TLS and AUTH from RAFTKV_CACERT / RAFTKV_USER / RAFTKV_PASSWORD, as raftkv-cli.
    nodes = trio.run(cluster_status, endpoints, timeout, security_from_env())
    if as_json:
        click.echo(json.dumps(to_json(nodes)))
    else:
        click.echo(render_table(nodes, color=sys.stdout.isatty()))
    raise SystemExit(status_exit_code(nodes))


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
    print_members(_split(endpoints))


@member.command("add")
@click.argument("node_id", type=click.IntRange(min=1))
@click.argument("peer_addr")
@click.option("--learner", is_flag=True, help="Keep it a learner (no automatic promotion).")
@click.option("--timeout", default=15.0, show_default=True, type=FiniteFloatRange(min=0),
              help="Keep retrying while the cluster says TRYAGAIN for this long.")
@_endpoints_option
def member_add(node_id: int, peer_addr: str, learner: bool, timeout: float,
               endpoints: str) -> None:
    """Add node NODE_ID (peer address PEER_ADDR) as a learner; start it with --join."""
    words = ["ADDNODE", str(node_id), peer_addr] + (["LEARNER"] if learner else [])
    change(_split(endpoints), words, timeout)


@member.command("remove")
@click.argument("node_id", type=click.IntRange(min=1))
@click.option("--timeout", default=15.0, show_default=True, type=FiniteFloatRange(min=0))
@_endpoints_option
def member_remove(node_id: int, timeout: float, endpoints: str) -> None:
    """Remove node NODE_ID (a voter or a learner; the leader too)."""
    change(_split(endpoints), ["REMOVENODE", str(node_id)], timeout)


@member.command("promote")
@click.argument("node_id", type=click.IntRange(min=1))
@click.option("--timeout", default=15.0, show_default=True, type=FiniteFloatRange(min=0))
@_endpoints_option
def member_promote(node_id: int, timeout: float, endpoints: str) -> None:
    """Make learner NODE_ID a voter (once it has caught up with the leader)."""
    change(_split(endpoints), ["PROMOTE", str(node_id)], timeout)


def check_peer_security(client_addr: str, peer_addr: str, options: dict[str, Any]) -> None:
    """Peer-security flags, checked before anything starts (raftkv.node.security)."""
    try:
        warnings = security_warnings(client_addr, peer_addr, options)
    except SecurityConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    for warning in warnings:
        click.echo(f"WARNING: {warning}", err=True)


def check_client_auth(client_addr: str, options: dict[str, Any]) -> None:
    """--requirepass and --acl-file load (raftkv.server.acl), a client address beyond
    loopback has client authentication (raftkv.server.protected_mode), the client TLS files
    load (raftkv.server.client_tls), before anything starts."""
    try:
        acl = AccessControl.configure(options["requirepass"], options["acl_file"])
    except ACLError as exc:
        raise click.UsageError(f"--acl-file: {exc}") from exc
    try:
        warnings = client_auth_warnings(client_addr, acl, options["insecure"])
    except ProtectedModeError as exc:
        raise click.UsageError(str(exc)) from exc
    for warning in warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if options["tls_cert"] or options["tls_key"] or options["tls_client_auth"]:
        try:
            client_tls_context(options["tls_cert"], options["tls_key"], options["tls_ca"],
                               options["tls_client_auth"])
        except ClientTLSError as exc:
            raise click.UsageError(str(exc)) from exc


def check_metrics_security(options: dict[str, Any]) -> None:
    """The metrics port's TLS files and token load (raftkv.server.http_auth), before
    anything starts; warnings for an open /metrics beyond loopback."""
    try:
        MetricsSecurity.from_options(options)
    except MetricsSecurityError as exc:
        raise click.UsageError(str(exc)) from exc
    for warning in metrics_warnings(options):
        click.echo(f"WARNING: {warning}", err=True)


def _split(endpoints: str) -> list[str]:
    return [e.strip() for e in endpoints.split(",") if e.strip()]


@main.command()
@click.argument("words", nargs=-1, required=True, metavar="FILE | verify FILE")
@click.option("--endpoints", default=LOCAL_ENDPOINTS, show_default=True,
              envvar="RAFTKV_ENDPOINTS", help="Client addresses; the first that answers "
              "serves the backup (any node: followers too).")
@click.option("--timeout", default=30.0, show_default=True, type=FiniteFloatRange(min=0),
              help="Keep trying while no node can start a backup (no leader) this long.")
def backup(words: tuple[str, ...], endpoints: str, timeout: float) -> None:
    """Write a consistent backup of a live cluster to FILE; `backup verify FILE` checks one.

    The backup is taken at a linearizable point (every write acknowledged before it started
    is in it) and says which Raft index it covers. Exit status: 0 ok, 1 failed."""
    try:
        if words[0] == "verify":
            if len(words) != 2:
                raise click.UsageError("usage: raftkv backup verify FILE")
            h = verify_backup(words[1])
            click.echo(f"{words[1]}: OK: cluster {h.cluster_id!r} index {h.index} term "
                       f"{h.term}, {h.keys} keys, {h.bytes} bytes, sha256 {h.sha256[:16]}..., "
                       f"taken {h.created} from {h.source}")
            return
        if len(words) != 1:
            raise click.UsageError("usage: raftkv backup [--endpoints ...] FILE")
        started = time.monotonic()
        h = take_backup(_split(endpoints), words[0], timeout)
        click.echo(f"backup of cluster {h.cluster_id!r} at index {h.index} (term {h.term}): "
                   f"{h.keys} keys, {h.bytes} bytes, from {h.source}, in "
                   f"{time.monotonic() - started:.2f} s -> {words[0]}")
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None


F = TypeVar("F", bound=Callable[..., Any])


def bump_index_option(past: str) -> Callable[[F], F]:
    """``--bump-index`` of restore and recover (raftkv.restore.bump_past)."""
    return click.option(
        "--bump-index", "bump", type=click.IntRange(min=1), default=DEFAULT_BUMP,
        show_default=True,
        help=f"Start the new cluster's log (and change ids) this far past {past}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--data-dir", required=True, type=click.Path(), help="New, empty directory.")
@click.option("--id", "node_id", type=click.IntRange(min=1), required=True,
              help="The id of the member this directory is for.")
@click.option("--cluster", required=True,
              help="The NEW cluster's voters: 1=HOST:PORT,2=HOST:PORT,... (peer addresses).")
@click.option("--cluster-id", required=True, type=ClusterId(False),
              help="The NEW cluster's id (must differ from the backed-up cluster's); start "
                   "its nodes with the same --cluster-id.")
@bump_index_option("the backup's index: more than the old cluster committed after the "
                   "backup, so no change id is issued twice. Use the same value for every "
                   "member.")
def restore(file: str, data_dir: str, node_id: int, cluster: str, cluster_id: str,
            bump: int) -> None:
    """Prepare DATA_DIR for member ID of a NEW cluster holding FILE's state.

    Run it for every member with the same FILE, --cluster and --cluster-id, then start the
    members with `raftkv serve --id I --data-dir DIR --cluster ... --cluster-id ...`.
    The change feed starts empty: a watcher of the old cluster that resumes gets the
    "change feed compacted" error and resyncs (etcd's --bump-revision --mark-compacted)."""
    try:
        members = parse_cluster(cluster)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cluster") from None
    started = time.monotonic()
    try:
        r = do_restore(file, data_dir, node_id, members, cluster_id, bump)
    except (BackupError, RestoreError, DiskStorageError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    h = r.header
    click.echo(f"restored {h.keys} keys (index {h.index}, term {h.term} of cluster "
               f"{h.cluster_id!r}) into {data_dir} for node {node_id} of new cluster "
               f"{cluster_id!r} at index {r.index} in {time.monotonic() - started:.2f} s\n"
               f"start it with: raftkv serve --id {node_id} --data-dir {data_dir} "
               f"--peer-addr {members[node_id]} --cluster {cluster} --cluster-id {cluster_id}"
               " --client-addr HOST:PORT")


@main.command()
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The surviving node's data directory (the node stopped).")
@click.option("--id", "node_id", type=click.IntRange(min=1), required=True,
              help="The surviving node's id.")
@click.option("--force-new-cluster", is_flag=True,
              help="Required: you accept that writes only the lost nodes had are gone.")
@click.option("--cluster-id", default="", type=ClusterId(True),
              help="Give the one-node cluster a new id (default: keep the old one).")
@click.option("--peer-addr", default="",
              help="Its peer address (default: the one in its configuration).")
@bump_index_option("the survivor's last index: more than the lost nodes could have "
                   "appended past it, so no change id is issued twice.")
def recover(data_dir: str, node_id: int, force_new_cluster: bool, cluster_id: str,
            peer_addr: str, bump: int) -> None:
    """DISASTER RECOVERY: turn a stopped survivor's data into a one-node cluster.

    Only when a majority of the voters is lost for good. Keeps every entry in the
    survivor's log; the old directory is moved aside, not deleted. Never restart the lost
    nodes with their old data afterwards. Grow the cluster again with `raftkv member add`
    and `raftkv serve --join`."""
    if not force_new_cluster:
        raise click.UsageError(
            "recover rewrites the membership to this one node and can drop writes that only "
            "the lost nodes had; pass --force-new-cluster to do it")
    if peer_addr:  # serve's rule: the printed start command must work (attack21)
        try:
            parse_addr(peer_addr)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--peer-addr") from None
    click.echo("WARNING: forcing a new one-node cluster from node "
               f"{node_id}'s data in {data_dir}", err=True)
    try:
        r = do_recover(data_dir, node_id, cluster_id, peer_addr, bump)
    except (RestoreError, DiskStorageError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"recovered {r.keys} keys (last index {r.last}, term {r.term}; {r.beyond_commit} "
        f"entries past the known commit index kept) into a one-node cluster at index "
        f"{r.index} (change ids before it: compacted): node {node_id} "
        f"at {r.peer_addr}, cluster id {r.cluster_id!r}\nold data kept in {r.old_dir}\n"
        f"start it with: raftkv serve --id {node_id} --data-dir {data_dir} "
        f"--peer-addr {r.peer_addr} --cluster {node_id}={r.peer_addr} "
        f"--cluster-id {r.cluster_id} --client-addr HOST:PORT\n"
        f"then grow it: raftkv member add ID PEER_ADDR, and start that node with --join")
