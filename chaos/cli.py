"""``raftkv-chaos``: the deterministic simulator and the real-process chaos suite."""

from __future__ import annotations

import click

from raftkv import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raftkv-chaos")
def main() -> None:
    """Break RaftKV on purpose and check that it holds."""


@main.command()
def sim() -> None:
    """Run seeded deterministic simulations of the consensus core."""
    raise click.ClickException("raftkv-chaos sim is not implemented yet (the consensus issue).")


@main.command()
def run() -> None:
    """Run real nodes under faults and check the history."""
    raise click.ClickException("raftkv-chaos run is not implemented yet (the chaos issue).")


@main.command()
def check() -> None:
    """Re-check a saved history for linearizability."""
    raise click.ClickException("raftkv-chaos check is not implemented yet (the chaos issue).")
