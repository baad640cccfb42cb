"""The fuzz campaign (chaos/fuzz.py), short: 3,000 inputs per decoder (21,000 in all);
every one decodes or raises its declared error. ``raftkv-chaos fuzz`` runs the long one."""

from __future__ import annotations

import random

import attrs
import pytest
from click.testing import CliRunner

from chaos.cli import main
from chaos.fuzz import TARGETS, fuzz_target, mutate
from raftkv.kv.codec import decode_entry


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_decoder_decodes_or_raises_its_declared_error(name: str) -> None:
    stats, findings = fuzz_target(TARGETS[name], 3000, seed=12)
    assert findings == [] and stats.findings == 0
    assert stats.inputs == 3000 == stats.decoded + stats.refused
    # Both outcomes are exercised: the inputs are neither all valid nor all garbage.
    assert stats.decoded > 150 and stats.refused > 150


def test_an_undeclared_exception_is_a_finding_with_its_input() -> None:
    """The harness has teeth: a decoder that lets an IndexError out on some inputs."""

    def buggy(data: bytes, rng: random.Random) -> object:
        if len(data) > 3 and data[1] == 0xC4:
            raise IndexError("boom")
        return decode_entry(data)

    target = attrs.evolve(TARGETS["entry"], name="buggy", run=buggy)
    stats, findings = fuzz_target(target, 2000, seed=3)
    assert stats.findings > 0 and len(findings) == 1  # one kept per type and place
    assert findings[0].error == "IndexError: boom" and findings[0].data[1] == 0xC4


def test_mutation_is_deterministic_for_a_seed() -> None:
    corpus = [b"abc", b"\x93\x01\x02\x03"]
    runs = [[mutate(b"hello world", random.Random(7), corpus) for _ in range(3)]
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_the_cli_runs_a_campaign_and_exits_0_without_findings(tmp_path) -> None:
    result = CliRunner().invoke(main, ["fuzz", "--inputs", "200", "--target", "wal",
                                       "--target", "resp", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "400 inputs" in result.output and "0 findings" in result.output
