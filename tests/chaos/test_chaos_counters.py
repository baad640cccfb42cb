"""The exactly-once check of the chaos suite's session clients (chaos.counters)."""

from __future__ import annotations

from chaos.counters import Tally, check_counters


def tally(acked: int = 3, unknown: int = 0, tokens: tuple[str, ...] = ("a", "b"),
          unknown_tokens: tuple[str, ...] = ()) -> Tally:
    return Tally(acked_incr=acked, unknown_incr=unknown, acked_tokens=set(tokens),
                 unknown_tokens=set(unknown_tokens),
                 sent_tokens=set(tokens) | set(unknown_tokens))


def test_exact_counts_hold() -> None:
    verdict = check_counters(tally(), 3, "a,b,")
    assert verdict.ok, verdict.summary
    assert "counter 3 = 3 acknowledged increments" in verdict.summary


def test_an_increment_applied_twice_is_caught() -> None:
    verdict = check_counters(tally(), 4, "a,b,")
    assert not verdict.ok and "counter 4, expected 3" in verdict.summary


def test_unknown_increments_widen_the_range_only_upwards() -> None:
    assert check_counters(tally(unknown=2), 5, "a,b,").ok
    assert check_counters(tally(unknown=2), 3, "a,b,").ok
    assert not check_counters(tally(unknown=2), 6, "a,b,").ok
    assert not check_counters(tally(unknown=2), 2, "a,b,").ok  # an acked one lost


def test_an_append_applied_twice_missing_or_invented_is_caught() -> None:
    assert "applied more than once" in check_counters(tally(), 3, "a,b,a,").summary
    assert "acknowledged appends missing" in check_counters(tally(), 3, "a,").summary
    assert "never sent" in check_counters(tally(), 3, "a,b,z,").summary
    assert check_counters(tally(unknown_tokens=("u",)), 3, "a,u,b,").ok  # at most once
    assert check_counters(tally(unknown_tokens=("u",)), 3, "b,a,").ok


def test_missing_keys_and_odd_values() -> None:
    assert check_counters(tally(acked=0, tokens=()), None, None).ok
    assert not check_counters(tally(), None, "a,b,").ok
    assert not check_counters(tally(), "x", "a,b,").ok
