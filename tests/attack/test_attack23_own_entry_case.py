"""attack23: ``serve`` refuses its own ``--cluster`` entry when the hostname is spelled in
another case (``--peer-addr node1:7101`` with ``--cluster 1=Node1:7101,...``).

Host names are case-insensitive (RFC 4343): ``Node1`` and ``node1`` are one host, resolve
to the same address, and a node started that way worked before session 11's own-entry
check (``check_own_entry``), which compares the host strings as typed. A node whose
``--peer-addr`` is built from ``$HOSTNAME`` (upper case) and a ``--cluster`` list written
in lower case now refuses to start with "differs from node 1's entry ... they must be the
same address", though they are. (etcd, whose rule the check cites, compares the resolved URLs.)

Right: hostnames compared case-insensitively; only a different host or port is
refused.
"""

from __future__ import annotations

import pytest

from raftkv.node.settings import check_own_entry

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(("entry", "own"), [
    ("Node1:7101", "node1:7101"),
    ("node1:7101", "NODE1:7101"),
    ("LOCALHOST:7101", "localhost:7101"),
])
def test_the_same_hostname_in_another_case_is_the_nodes_entry(entry: str, own: str) -> None:
    check_own_entry(1, {1: entry, 2: "node2:7102"}, own)  # raised ValueError
    check_own_entry(1, {1: entry, 2: "node2:7102"}, "0.0.0.0:7101", own)


def test_another_host_is_still_refused() -> None:
    with pytest.raises(ValueError, match="differs"):
        check_own_entry(1, {1: "node1:7101"}, "node2:7101")
