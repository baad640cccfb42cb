"""The runtime's table of proposals waiting for their entry to apply."""

from __future__ import annotations

from raftkv.node.pending import Pending
from raftkv.node.requests import LOST, RequestTracker


def test_a_reused_index_answers_the_older_write_lost() -> None:
    # A node proposed at index 5 in term 2, lost leadership and that entry, and leads
    # again in term 4, proposing at index 5 once more: the first client must not hang.
    requests = RequestTracker({"proposals_failed": 0})
    old, new = Pending(), Pending()
    requests.track_write(5, 2, old, 10.0)
    requests.track_write(5, 4, new, 11.0)
    assert old.done and old.value is LOST
    assert not new.done
    waiter = requests.writes[5]
    assert (waiter.pending, waiter.term, waiter.deadline) == (new, 4, 11.0)
    assert requests.stats["proposals_failed"] == 1  # raftkv_proposals_failed_total
