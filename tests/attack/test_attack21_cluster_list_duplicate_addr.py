"""``--cluster`` takes two members at one peer address (attack21).

``RAFT ADDNODE 4 127.0.0.1:7102`` is refused ("peer address 127.0.0.1:7102 is already
node 2's"), but the same mistake in the list a cluster is founded with, a copy-paste
``--cluster 1=127.0.0.1:7101,2=127.0.0.1:7101,3=...`` on ``raftkv serve`` (or on
``raftkv restore``, which writes it into the data directory), is accepted: the node
starts, dials "node 2" at its own address and logs ``peer refused handshake ... node id
1 is this node's own`` every few seconds; node 2, wherever it runs, is a voter nobody can
reach, so the cluster founded this way has one failure less to spare than it shows.

etcd refuses such a list at start (``duplicated url ... in cluster config``). Right: the
same check as ``ADDNODE``, in ``parse_cluster`` (the one parser of ``--cluster`` for
serve, restore and ``raftkv up``).
"""

from __future__ import annotations

import re

import pytest

from raftkv.node.settings import parse_cluster


@pytest.mark.parametrize("text", ["1=127.0.0.1:7101,2=127.0.0.1:7101",
                                  "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7101"])
def test_a_cluster_list_with_one_address_twice_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("127.0.0.1:7101")):
        parse_cluster(text)


def test_distinct_addresses_still_parse() -> None:
    assert parse_cluster("1=127.0.0.1:7101,2=127.0.0.1:7102") == {
        1: "127.0.0.1:7101", 2: "127.0.0.1:7102"}
