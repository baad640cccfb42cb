"""The hostile and resource nemeses (chaos.nemesis, chaos.fuzz's live inputs) and the
replicas check (chaos.replicas), on a real cluster: a run under hostile traffic, descriptor
exhaustion, a non-reading client and a huge-value client passes every check."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from chaos import replicas
from chaos.fuzz import HOSTILE_KEY, hostile_command, hostile_peer_input
from chaos.nemesis import RESOURCES, TRAFFIC_NEMESES, Fault, parse_nemeses
from chaos.result import RunOptions
from chaos.run import analyse, drive
from raftkv.kv import lookup
from wire.errors import ProtocolError
from wire.frames import FrameDecoder
from wire.hello import Hello
from wire.record import decode


def test_the_traffic_and_resource_names_parse() -> None:
    assert parse_nemeses("hostile,fd-exhaust") == ("hostile", "fd-exhaust")
    assert set(parse_nemeses("resources")) == set(RESOURCES)
    assert not set(TRAFFIC_NEMESES) & set(parse_nemeses("all"))  # named explicitly only
    with pytest.raises(ValueError, match="hostile"):
        parse_nemeses("hostil")


def test_hostile_writes_only_name_hostile_keys() -> None:
    """The workload's keys and the membership are not the hostile traffic's to change:
    every key a generated command names is under HOSTILE_KEY."""
    rng = random.Random(7)
    for _ in range(20_000):
        args = hostile_command(rng)
        spec = lookup(args[0])
        if spec is None or not spec.is_write or not spec.arity_ok(len(args)):
            continue  # unknown, read-only, or refused for its arity
        assert all(k.startswith(HOSTILE_KEY) for k in spec.keys(args)), args


def test_a_member_s_id_is_claimed_only_where_peers_authenticate() -> None:
    rng = random.Random(3)
    for _ in range(5_000):
        data = hostile_peer_input(rng, "cid", [1, 2, 3], dst=1, authenticated=False)
        decoder = FrameDecoder(max_frame_size=1 << 20)
        try:
            frames = decoder.feed(data)
            first = decode(frames[0]) if frames else None
        except (ProtocolError, ValueError, TypeError):
            continue  # garbage: refused before any Hello
        if isinstance(first, Hello):
            assert first.node_id not in (2, 3), first


async def test_the_replicas_check_fails_on_different_states(monkeypatch) -> None:
    digests = {("h", 1): (10, "aaa"), ("h", 2): (10, "aaa"), ("h", 3): (10, "bbb")}

    async def fake(addr, patience=10.0):
        return digests[addr]

    monkeypatch.setattr(replicas, "state_digest", fake)
    addrs = {1: ("h", 1), 2: ("h", 2), 3: ("h", 3)}
    verdict = await replicas.compare_replicas(addrs, patience=2.0)
    assert not verdict.ok and "differ at index 10" in verdict.summary
    digests[("h", 3)] = (10, "aaa")
    assert (await replicas.compare_replicas(addrs, patience=2.0)).ok
    digests[("h", 3)] = (9, "ccc")  # one replica behind for good
    verdict = await replicas.compare_replicas(addrs, patience=1.0)
    assert not verdict.ok and "not at one index" in verdict.summary


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_run_under_hostile_traffic_and_resource_faults_passes(tmp_path: Path) -> None:
    schedule = (Fault("hostile", 1.0, 3.0, 1), Fault("fd-exhaust", 4.5, 2.5, 2),
                Fault("slow-reader", 7.5, 2.5, 3), Fault("huge-value", 10.5, 2.0, 4))
    opts = RunOptions(duration=14.0, nemeses=("hostile", *RESOURCES[1:]), net="none",
                      clients=4, seed=1, out=tmp_path / "out", schedule=schedule,
                      quiet=True, check_timeout=60.0)
    collected = trio.run(drive, opts)
    result = analyse(opts, collected)
    kinds = [f.kind for f in collected.faults]
    assert kinds == ["hostile", "fd-exhaust", "slow-reader", "huge-value"], collected.skipped
    hostile = collected.faults[0].description
    assert "members' ids with a bad proof" in hostile and " 0 client" not in hostile
    checks = {c.name: c for c in result.checks}
    assert checks["replicas"].ok and "identical" in checks["replicas"].summary
    assert result.ok, [(c.name, c.summary) for c in result.checks]
