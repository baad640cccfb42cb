"""The sweep of parked commands: a leader's (parked only while it hands over) wait for the
transfer, whatever their deadlines; once the node no longer leads, the forwarded writes
parked while it led are refused together, so it never proposes a later one without an
earlier one (attack20), and the rest keep their own deadlines."""

from __future__ import annotations

from raftkv.node.pending import Pending
from raftkv.node.requests import NO_LEADER, NOT_LEADER_NOW, RequestTracker


def _tracker(leads: list[bool]) -> RequestTracker:
    return RequestTracker({"proposals_failed": 0}, lambda: leads[0])


def test_a_leader_refuses_nothing_parked_by_its_deadline() -> None:
    requests = _tracker([True])
    local, forwarded = Pending(), Pending()
    requests.park([b"SET", b"k", b"1"], True, local, 1.0)
    requests.park([b"SET", b"k", b"2"], True, forwarded, 1.0, forwarded=True)
    requests.sweep(100.0)
    assert not local.done and not forwarded.done
    assert [w.pending for w in requests.unpark()] == [local, forwarded]


def test_once_not_leading_every_forwarded_write_is_refused_together() -> None:
    leads = [True]
    requests = _tracker(leads)
    first, local, later = Pending(), Pending(), Pending()
    requests.park([b"SET", b"k", b"1"], True, first, 2.0, forwarded=True)
    requests.park([b"SET", b"j", b"1"], True, local, 9.0)
    requests.park([b"SET", b"k", b"2"], True, later, 9.0, forwarded=True)
    requests.sweep(1.0)
    assert not first.done
    leads[0] = False  # it stepped down with nobody known to lead
    requests.sweep(1.0)  # no deadline passed: the forwarded ones go, the local one waits
    assert first.value is NOT_LEADER_NOW and later.value is NOT_LEADER_NOW
    assert not local.done
    requests.sweep(9.0)
    assert local.value is NO_LEADER
    assert requests.unpark() == []
