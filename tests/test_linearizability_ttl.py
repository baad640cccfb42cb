"""The checker's model of expiring writes (``SET k v PX ms`` as a write with ``ttl``): a key
reads as missing from a deadline somewhere in [invoke + ttl, complete + ttl] (widened by
the uncertainty), both outcomes are legal inside that window, never outside it."""

from __future__ import annotations

import pytest

from chaos.history import HistoryError, Op, dumps, loads
from chaos.linearizability import check


def w(v: object, a: float, b: float | None, ttl: float | None = None, o: str = "ok") -> Op:
    return Op(1, "k", "write", v, a, b, o, ttl=ttl)


def r(v: object, a: float, b: float) -> Op:
    return Op(2, "k", "read", v, a, b, "ok")


def cas(exp: object, new: object, a: float, b: float, swapped: bool) -> Op:
    return Op(3, "k", "cas", (exp, new), a, b, "ok", result=swapped)


def verdict(ops: list[Op], uncertainty: float = 0.0) -> str:
    return check(ops, uncertainty=uncertainty).verdict


def test_a_value_read_after_its_deadline_is_a_violation() -> None:
    # written in [0, 0.1] with ttl 1: gone by 1.1 at the latest; read in [1.5, 1.6]
    assert verdict([w(1, 0, 0.1, ttl=1), r(1, 1.5, 1.6)]) == "violation"
    assert verdict([w(1, 0, 0.1, ttl=1), r(None, 1.5, 1.6)]) == "ok"


def test_a_key_missing_before_its_deadline_is_a_violation() -> None:
    # never removed before its deadline: missing in [0.5, 0.6] is too early
    assert verdict([w(1, 0, 0.1, ttl=1), r(None, 0.5, 0.6)]) == "violation"
    assert verdict([w(1, 0, 0.1, ttl=1), r(1, 0.5, 0.6)]) == "ok"


def test_both_outcomes_are_legal_inside_the_window() -> None:
    for seen in (1, None):
        assert verdict([w(1, 0, 0.1, ttl=1), r(seen, 1.02, 1.05)]) == "ok"


def test_the_uncertainty_widens_the_window() -> None:
    ops = [w(1, 0, 0.1, ttl=1), r(1, 1.12, 1.13)]
    assert verdict(ops) == "violation"
    assert verdict(ops, uncertainty=0.05) == "ok"


def test_once_seen_missing_a_key_stays_missing_until_written() -> None:
    ops = [w(1, 0, 0.1, ttl=1), r(None, 1.0, 1.05), r(1, 1.06, 1.08)]
    assert verdict(ops) == "violation"
    assert verdict([*ops[:2], w(2, 1.06, 1.07), r(2, 1.08, 1.09)]) == "ok"


def test_a_plain_write_clears_the_deadline() -> None:
    assert verdict([w(1, 0, 0.1, ttl=1), w(2, 0.2, 0.3), r(2, 5, 5.1)]) == "ok"
    assert verdict([w(1, 0, 0.1, ttl=1), w(2, 0.2, 0.3), r(None, 5, 5.1)]) == "violation"


def test_a_cas_keeps_the_deadline() -> None:
    base = [w(1, 0, 0.1, ttl=1), cas(1, 2, 0.2, 0.3, True)]
    assert verdict([*base, r(None, 1.5, 1.6)]) == "ok"
    assert verdict([*base, r(2, 1.5, 1.6)]) == "violation"
    # a CAS after the deadline finds the key missing
    assert verdict([w(1, 0, 0.1, ttl=1), cas(1, 2, 1.5, 1.6, True)]) == "violation"
    assert verdict([w(1, 0, 0.1, ttl=1), cas(1, 2, 1.5, 1.6, False)]) == "ok"


def test_an_info_expiring_write_may_explain_a_later_missing_read() -> None:
    """Nothing observes the info write's value, yet only it explains the missing read: the
    unobserved-write reduction must not drop it on a key with expiring writes."""
    ops = [w(1, 0, 0.1), w(2, 0.2, None, ttl=1, o="info"), r(None, 3, 3.1)]
    assert verdict(ops) == "ok"
    assert verdict(ops[:1] + ops[2:]) == "violation"


def test_ttl_round_trips_and_is_validated() -> None:
    op = w(1, 0, 0.1, ttl=0.5)
    assert loads(dumps([op])) == [op]
    assert '"ttl"' not in dumps([w(1, 0, 0.1)])  # histories without TTLs are unchanged
    with pytest.raises(HistoryError, match="ttl"):
        Op(1, "k", "read", None, 0, 1, "ok", ttl=1)
    with pytest.raises(HistoryError, match="ttl"):
        w(1, 0, 0.1, ttl=0)
