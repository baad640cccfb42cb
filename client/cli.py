"""``raftkv-cli``: the click command line for RaftKV."""

from __future__ import annotations

import click

from raftkv import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftkv-cli")
@click.argument("command", nargs=-1)
def main(command: tuple[str, ...]) -> None:
    """Talk to a RaftKV cluster: one-shot (raftkv-cli SET a b) or interactive."""
    raise click.ClickException("raftkv-cli is not implemented yet (the client issue).")
