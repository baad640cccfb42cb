"""``raftkv``: run a node, run a local cluster, administer a cluster."""

from __future__ import annotations

import click

from raftkv import __version__


def not_yet(what: str, issue: str) -> None:
    """Fail clearly for a subcommand whose issue has not landed yet."""
    raise click.ClickException(f"{what} is not implemented yet ({issue}).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftkv")
def main() -> None:
    """RaftKV server and cluster administration."""


@main.command()
def serve() -> None:
    """Run one RaftKV node."""
    not_yet("raftkv serve", "the running-node issue")


@main.command()
def up() -> None:
    """Start a local 3-node cluster on 127.0.0.1 (client ports 7001-7003)."""
    not_yet("raftkv up (it needs the node runtime)", "the running-node issue")


@main.command()
def status() -> None:
    """One line per node: role, term, commit/applied index, lag."""
    not_yet("raftkv status", "the running-node issue")


@main.command()
def member() -> None:
    """List, add, remove and promote cluster members."""
    not_yet("raftkv member", "the membership issue")
