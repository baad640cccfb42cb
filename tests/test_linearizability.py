"""The linearizability checker: it rejects classic anomalies and accepts real registers."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos import history as hist
from chaos.cli import main
from chaos.history import HistoryError, Op
from chaos.linearizability import check, check_key


def w(p: int, v: object, a: float, b: float | None, o: str = "ok", key: str = "k") -> Op:
    return Op(p, key, "write", v, a, b, o)


def r(p: int, v: object, a: float, b: float | None, o: str = "ok", key: str = "k") -> Op:
    return Op(p, key, "read", v, a, b, o)


def cas(p: int, exp: object, new: object, a: float, b: float | None, o: str = "ok",
        result: bool | None = True, key: str = "k") -> Op:
    return Op(p, key, "cas", (exp, new), a, b, o, result=result if o == "ok" else None)


def verdict(ops: list[Op]) -> str:
    return check(ops).verdict


# -- teeth: classic non-linearizable histories ------------------------------------------


def test_stale_read_after_completed_write_is_rejected() -> None:
    ops = [w(1, "a", 0, 1), w(1, "b", 2, 3), r(2, "a", 4, 5)]
    assert verdict(ops) == "violation"
    assert verdict([*ops[:2], r(2, "b", 4, 5)]) == "ok"


def test_lost_write_final_read_shows_older_value_is_rejected() -> None:
    ops = [w(1, "a", 0, 1), w(2, "b", 2, 3), r(3, "a", 10, 10)]
    assert verdict(ops) == "violation"


def test_double_successful_cas_from_same_expected_is_rejected() -> None:
    base = [w(1, 0, 0, 1)]
    both = [cas(2, 0, 1, 2, 5), cas(3, 0, 2, 2, 5)]
    assert verdict(base + both) == "violation"
    # One of them failing its compare is fine.
    assert verdict([*base, both[0], cas(3, 0, 2, 2, 5, result=False)]) == "ok"


def test_read_of_never_written_value_is_rejected() -> None:
    assert verdict([w(1, "a", 0, 1), r(2, "zzz", 0, 1)]) == "violation"
    # Not even a fail or an info read of it makes it readable.
    assert verdict([w(1, "zzz", 0, 1, "fail"), r(2, "zzz", 2, 3)]) == "violation"


def test_read_your_write_across_clients_in_real_time_is_rejected() -> None:
    # p1's write completed before p2 started reading, yet p2 sees the missing key.
    assert verdict([w(1, "a", 0, 1), r(2, None, 1.5, 2)]) == "violation"
    # Overlapping (even touching) intervals are concurrent, so either answer is fine.
    assert verdict([w(1, "a", 0, 1), r(2, None, 1, 2)]) == "ok"


def test_reads_inside_one_write_cannot_go_back_in_time() -> None:
    write = w(1, "a", 0, 10)
    assert verdict([write, r(2, None, 1, 2), r(3, "a", 3, 4)]) == "ok"
    assert verdict([write, r(2, "a", 1, 2), r(3, None, 3, 4)]) == "violation"


def test_not_swapped_cas_is_an_observation() -> None:
    # The register surely held 0, so a CAS from 0 that refused to swap is impossible.
    assert verdict([w(1, 0, 0, 1), cas(2, 0, 2, 2, 3, result=False)]) == "violation"


def test_swapped_cas_needs_its_expected_value() -> None:
    assert verdict([w(1, 0, 0, 1), cas(2, 5, 6, 2, 3)]) == "violation"
    assert verdict([cas(2, None, 6, 2, 3), r(1, 6, 4, 5)]) == "ok"  # swap from missing


# -- valid histories are accepted -------------------------------------------------------


def test_concurrent_operations_in_any_order() -> None:
    ops = [w(1, "a", 0, 5), w(2, "b", 0, 5), w(3, "c", 0, 5), r(4, "b", 6, 7)]
    assert verdict(ops) == "ok"
    assert verdict([*ops[:3], r(4, "a", 6, 7)]) == "ok"
    later = verdict([*ops[:3], r(4, "a", 6, 7), r(5, "c", 8, 9), r(6, "a", 10, 11)])
    assert later == "violation"


def test_info_write_that_took_effect() -> None:
    assert verdict([w(1, "a", 0, 1, "info"), r(2, "a", 5, 6)]) == "ok"


def test_info_write_that_did_not_take_effect() -> None:
    assert verdict([w(1, "a", 0, 1, "info"), r(2, None, 5, 6)]) == "ok"
    assert verdict([w(1, "a", 0, None, "info"), r(2, None, 5, 6), r(2, "a", 7, 8)]) == "ok"


def test_info_write_observed_after_a_long_delay() -> None:
    ops = [w(1, "a", 0, 1), w(2, "b", 2, 3, "info"), r(3, "a", 4, 5), r(3, "b", 100, 101)]
    assert verdict(ops) == "ok"
    # ... but once observed it cannot be un-observed.
    assert verdict([*ops, r(3, "a", 102, 103)]) == "violation"


def test_info_write_cannot_take_effect_before_its_invoke() -> None:
    assert verdict([r(2, "a", 0, 1), w(1, "a", 2, 3, "info")]) == "violation"


def test_cas_not_swapped_consistent_with_concurrent_write() -> None:
    ops = [w(1, 0, 0, 1), w(2, 1, 2, 5), cas(3, 0, 2, 3, 4, result=False)]
    assert verdict(ops) == "ok"


def test_fail_operations_never_happened() -> None:
    assert verdict([w(1, "a", 0, 1, "fail"), r(2, None, 2, 3)]) == "ok"
    assert verdict([w(1, "a", 0, 1), cas(2, "a", "b", 2, 3, "fail"), r(3, "a", 4, 5)]) == "ok"


def test_info_cas_may_or_may_not_swap() -> None:
    base = [w(1, "a", 0, 1), cas(2, "a", "b", 2, 3, "info")]
    assert verdict([*base, r(3, "b", 4, 5)]) == "ok"
    assert verdict([*base, r(3, "a", 4, 5)]) == "ok"
    assert verdict([*base, r(3, "c", 4, 5)]) == "violation"


def test_unobserved_info_write_pruning_keeps_what_a_refused_cas_needs() -> None:
    # The refused CAS from "a" is only explained by the info write of "z" taking effect,
    # though nothing reads "z": pruning must not drop it.
    ops = [w(1, "a", 0, 1), w(2, "z", 2, 3, "info"), cas(3, "a", "b", 4, 5, result=False)]
    assert verdict(ops) == "ok"
    # Without the refused CAS, an unobserved info write is dropped before the search.
    assert check_key("k", ops[:2]).ops == 1
    # It cannot help a refused CAS that returned before it was invoked ...
    late = [w(1, "a", 0, 1), cas(3, "a", "b", 2, 3, result=False), w(2, "z", 4, 5, "info")]
    assert verdict(late) == "violation"
    # ... and one unobserved write explains one refusal, not two separated by a rewrite.
    twice = [*ops, w(1, "a", 6, 7), cas(3, "a", "b", 8, 9, result=False)]
    assert verdict(twice) == "violation"
    assert verdict([*twice, w(4, "y", 6.5, None, "info")]) == "ok"


def test_keys_are_checked_independently() -> None:
    ops = [w(1, "a", 0, 1, key="x"), r(2, "a", 2, 3, key="y"), r(2, "a", 2, 3, key="x")]
    res = check(ops)
    assert {k.key: k.verdict for k in res.keys} == {"x": "ok", "y": "violation"}
    assert res.verdict == "violation"
    assert res.summary().startswith("NOT linearizable: 1 of 2 keys")


def test_violation_explanation_names_the_prefix_and_the_stuck_operation() -> None:
    stale = r(3, "a", 4, 5)
    res = check([w(1, "a", 0, 1), w(2, "b", 2, 3), stale]).keys[0]
    assert res.explanation is not None
    assert [op.value for op in res.explanation.prefix] == ["a", "b"]
    assert res.explanation.state == "b"
    assert res.explanation.stuck == (stale,)
    text = res.render()
    assert "read 'a' but the register holds 'b'" in text
    assert "longest linearizable prefix: 2 operations" in text


def test_budget_exhaustion_is_unknown_not_ok() -> None:
    ops = [w(p, p % 3, 0, 10) for p in range(8)] + [r(9, 1, 11, 12)]
    assert check(ops).verdict == "ok"
    small = check(ops, max_states=3)
    assert small.verdict == "unknown"
    assert "budget of 3 states" in small.keys[0].reason
    assert not small.ok
    assert check(ops, timeout=0.0).verdict in ("ok", "unknown")  # deadline is polled


def test_no_ok_operations_is_trivially_ok() -> None:
    assert verdict([w(1, "a", 0, 1, "info"), r(2, "x", 0, 1, "info")]) == "ok"


# -- generated histories from a real register -------------------------------------------


def simulate(rng: random.Random, n_ops: int, procs: int, key: str = "k", domain: int = 0,
             info: float = 0.1, fail: float = 0.05) -> list[Op]:
    """Run a sequential register at random points inside random overlapping intervals.

    ``domain`` > 0 draws written values from a small set (duplicates make the search
    harder); 0 writes unique values. Info operations take effect inside or after their
    interval, or never.
    """
    clocks = [rng.uniform(0, 0.1) for _ in range(procs)]
    specs = []
    for counter in range(1, n_ops + 1):
        p = rng.randrange(procs)
        invoke = clocks[p] + rng.expovariate(50)
        complete = invoke + rng.expovariate(20)
        clocks[p] = complete
        f = rng.choices(["read", "write", "cas"], [4, 3, 2])[0]
        new = rng.randrange(domain) if domain else counter
        expected = rng.choice([None, *range(domain or counter)])
        u = rng.random()
        outcome = "fail" if u < fail else "info" if u < fail + info else "ok"
        if outcome == "ok":
            point: float | None = rng.uniform(invoke, complete)
        elif outcome == "info" and rng.random() < 0.6:
            point = rng.uniform(invoke, complete + rng.expovariate(2))
        else:
            point = None
        specs.append([p, f, new, expected, invoke, complete, outcome, point, None, None])
    register = None
    for s in sorted((s for s in specs if s[7] is not None), key=lambda s: s[7]):
        f, new, expected = s[1], s[2], s[3]
        if f == "read":
            s[8] = register
        elif f == "write":
            register = new
        else:
            s[9] = register == expected
            if s[9]:
                register = new
    ops = []
    for p, f, new, expected, invoke, complete, outcome, _, seen, swapped in specs:
        if f == "read":
            value: object = seen if outcome == "ok" else None
        elif f == "write":
            value = new
        else:
            value = (expected, new)
        ops.append(Op(p, key, f, value, invoke, complete, outcome,
                      result=swapped if f == "cas" and outcome == "ok" else None))
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(1, 40), procs=st.integers(1, 6),
       domain=st.sampled_from([0, 2, 3, 5]))
def test_real_register_histories_are_accepted(seed: int, n_ops: int, procs: int,
                                              domain: int) -> None:
    rng = random.Random(seed)
    ops = simulate(rng, n_ops, procs, domain=domain) + simulate(rng, n_ops, procs, key="j")
    res = check(ops)
    assert res.verdict == "ok", res.render()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_ops=st.integers(1, 40), procs=st.integers(1, 6),
       domain=st.sampled_from([0, 2, 3]), pick=st.integers(0, 10**6))
def test_mutating_one_read_to_an_unwritten_value_is_rejected(
        seed: int, n_ops: int, procs: int, domain: int, pick: int) -> None:
    ops = simulate(random.Random(seed), n_ops, procs, domain=domain)
    reads = [i for i, op in enumerate(ops) if op.f == "read" and op.outcome == "ok"]
    if not reads:
        ops.append(r(99, None, 0, 0))
        reads = [len(ops) - 1]
    i = reads[pick % len(reads)]
    ops[i] = Op(ops[i].process, "k", "read", "never-written", ops[i].invoke, ops[i].complete, "ok")
    res = check(ops)
    assert res.verdict == "violation"
    assert res.keys[0].explanation is not None
    assert ops[i] in res.keys[0].explanation.stuck


def test_thousands_of_ops_with_ten_clients_finish_within_a_generous_budget() -> None:
    ops = simulate(random.Random(7), 3000, 10, info=0.05, fail=0.02)
    res = check(ops, max_states=2_000_000)
    assert res.verdict == "ok", res.render()
    assert res.keys[0].ops > 2500


# -- history format and the CLI ---------------------------------------------------------


def test_history_round_trips_through_json_lines(tmp_path) -> None:
    ops = [
        *simulate(random.Random(3), 30, 3),
        Op("final", "k", "read", None, 9.0, 9.5, "ok", node="n1", error=None),
        Op(2, "k", "cas", ("a", "b"), 1.0, None, "info", error="timeout"),
    ]
    path = tmp_path / "h.jsonl"
    hist.save(path, ops)
    assert hist.load(path) == ops
    first = json.loads(path.read_text().splitlines()[-1])
    assert first["value"] == ["a", "b"] and first["complete"] is None


@pytest.mark.parametrize(("line", "message"), [
    ('{"process": 1, "key": "k", "f": "write", "value": "a", "invoke": 0, "outcome": "ok"}',
     "an ok operation needs a complete time"),
    ('{"process": 1, "key": "k", "f": "cas", "value": ["a", "b"], "invoke": 0, "complete": 1,'
     ' "outcome": "ok"}', "an ok cas needs result"),
    ('{"process": 1, "key": "k", "f": "cas", "value": "a", "invoke": 0, "complete": 1,'
     ' "outcome": "fail"}', "a cas value must be [expected, new]"),
    ('{"process": 1, "key": "k", "f": "del", "value": "a", "invoke": 0, "complete": 1,'
     ' "outcome": "ok"}', "f must be one of"),
    ('{"process": 1, "key": "k", "f": "read", "value": "a", "invoke": 2, "complete": 1,'
     ' "outcome": "ok"}', "complete 1 is before invoke 2"),
    ('{"process": 1, "key": "k", "f": "read", "value": "a", "invoke": 0, "complete": 1,'
     ' "outcome": "maybe"}', "outcome must be one of"),
    ('{"process": 1, "key": "k", "f": "read", "value": "a", "invoke": 0, "complete": 1,'
     ' "outcome": "ok", "colour": "red"}', "unknown field(s) colour"),
    ('{"process": 1, "key": "k"}', "missing field(s) f, value, invoke, outcome"),
    ("[1, 2]", "expected a JSON object"),
    ("{not json", "Expecting property name"),
])
def test_loading_rejects_bad_lines_naming_the_line(line: str, message: str) -> None:
    good = json.dumps(w(1, "a", 0, 1).to_json())
    with pytest.raises(HistoryError) as err:
        hist.loads(f"{good}\n\n{line}\n", source="h.jsonl")
    assert str(err.value).startswith("h.jsonl:3: ")
    assert message in str(err.value)


def _run_check(tmp_path, ops: list[Op], *args: str):
    path = tmp_path / "h.jsonl"
    hist.save(path, ops)
    return CliRunner().invoke(main, ["check", str(path), *args])


def test_cli_check_exit_codes_and_verdict_last(tmp_path) -> None:
    good = [w(1, "a", 0, 1), r(2, "a", 2, 3, key="k"), w(1, "b", 0, 1, key="j")]
    out = _run_check(tmp_path, good)
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1] == "linearizable: all 2 keys ok"

    bad = [*good, r(3, None, 5, 6)]
    out = _run_check(tmp_path, bad)
    assert out.exit_code == 1
    assert out.output.strip().splitlines()[-1].startswith("NOT linearizable: 1 of 2 keys")
    assert "could not be linearized next" in out.output

    busy = [w(p, p % 3, 0, 10) for p in range(8)] + [r(9, 1, 11, 12)]
    out = _run_check(tmp_path, busy, "--budget", "2")
    assert out.exit_code == 2
    assert "UNKNOWN" in out.output.strip().splitlines()[-1]


def test_cli_check_json(tmp_path) -> None:
    out = _run_check(tmp_path, [w(1, "a", 0, 1), r(2, "b", 2, 3)], "--json")
    assert out.exit_code == 1
    doc = json.loads(out.output)
    assert doc["verdict"] == "violation"
    assert doc["keys"][0]["explanation"]["stuck"][0]["value"] == "b"


def test_cli_check_reports_a_bad_history_by_line(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(w(1, "a", 0, 1).to_json()) + "\n{oops\n")
    out = CliRunner().invoke(main, ["check", str(path)])
    assert out.exit_code == 2
    assert "h.jsonl:2:" in out.output


def brute_force_linearizable(ops: list[Op]) -> bool:
    """Try every subset of info operations and every order: the definition, slowly."""
    ops = [op for op in ops if op.outcome != "fail" and not (op.f == "read" and op.outcome != "ok")]
    oks = [op for op in ops if op.outcome == "ok"]
    infos = [op for op in ops if op.outcome == "info"]
    for mask in range(1 << len(infos)):
        chosen = oks + [op for j, op in enumerate(infos) if mask >> j & 1]
        for order in itertools.permutations(chosen):
            if any(b.end < a.invoke for i, a in enumerate(order) for b in order[i + 1:]):
                continue  # b returned before a was invoked, so a cannot come first
            register = None
            for op in order:
                if op.f == "read":
                    if op.value != register:
                        break
                elif op.f == "write":
                    register = op.value
                else:
                    expected, new = op.value
                    if op.outcome == "info":
                        register = new if register == expected else register
                    elif op.result != (register == expected):
                        break
                    elif op.result:
                        register = new
            else:
                return True
    return False


@st.composite
def small_histories(draw: st.DrawFn) -> list[Op]:
    """Arbitrary (mostly not linearizable) histories over a tiny value set.

    In "refusals" mode every info write writes a value nothing observes and CASes are
    common, which exercises the just-in-time application of silent writes.
    """
    refusals = draw(st.booleans())
    values = st.sampled_from([None, 0, 1, 2])  # what reads and CASes expect
    ops = []
    for p in range(draw(st.integers(1, 5))):
        invoke = draw(st.integers(0, 6))
        complete = invoke + draw(st.integers(0, 3))
        f = draw(st.sampled_from(["read", "write", "cas", *(["write", "cas"] * refusals)]))
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
        new = draw(st.sampled_from([0, 1, 2, 3]))  # 3 (often 2) is never observed
        if refusals and f == "write" and outcome == "info":
            new = draw(st.sampled_from([3, 4]))
        if f == "read":
            ops.append(Op(p, "k", f, draw(values), invoke, complete, outcome))
        elif f == "write":
            ops.append(Op(p, "k", f, new, invoke, complete, outcome))
        else:
            result = draw(st.booleans()) if outcome == "ok" else None
            ops.append(Op(p, "k", f, (draw(values), new), invoke, complete, outcome,
                          result=result))
    return ops


@settings(max_examples=400, deadline=None)
@given(small_histories())
def test_agrees_with_brute_force_on_small_histories(ops: list[Op]) -> None:
    expected = "ok" if brute_force_linearizable(ops) else "violation"
    assert check(ops).verdict == expected
