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
