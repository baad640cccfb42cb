"""``RAFT PROMOTE`` of a learner that never answered says it is within range (attack21).

Live: ``raftkv member add 4 127.0.0.1:21104 --learner`` (node 4 not started yet, or
started without the peer secret), then ``raftkv member promote 4``: ``gave up: ...
TRYAGAIN learner 4 is not caught up (has 0 of 57 entries, must be within 100); retry
later``. 57 entries is within 100, so the text contradicts itself; the real reason (the
leader has never heard from node 4: ``match`` 0, which ``_caught_up`` refuses whatever
the lag) is not said, and "retry later" sends the operator waiting for something that
will not come until node 4 is started (or given the secret). etcd says what it means:
``etcdserver: can only promote a learner member which is in sync with leader``.

Right: when the learner has acknowledged nothing, say so (it has not answered the
leader: is it running, and can it reach its peers?), not a lag that is within bounds.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

# The consensus harness of tests/raft (a directory of tests, not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "raft"))
from raft_harness import Cluster

from raftkv.raft.membership import ConfigChangePending


def test_promoting_a_learner_that_never_answered_says_so() -> None:
    c = Cluster(4, learners=[4])
    c.crash(4)  # added, never started
    leader = c.elect(1)
    for n in range(5):
        leader.propose(b"x%d" % n)
    c.run()
    assert leader.last_index < 100

    with pytest.raises(ConfigChangePending) as refused:
        leader.promote_learner(4, max_lag=100)

    text = str(refused.value)
    lag = re.search(r"has (\d+) of (\d+) entries, must be within (\d+)", text)
    assert lag is None or int(lag[2]) - int(lag[1]) > int(lag[3]), (
        f"contradicts itself: {text!r}")
