"""chaos.cluster.free_ports never hands this process the same port twice."""

from __future__ import annotations

from chaos.cluster import free_ports


def test_two_calls_before_binding_get_disjoint_ports() -> None:
    # A test took 3 metrics ports, then its cluster took 6 more before any was bound: the
    # kernel handed a just-released one out again and a node could not start (CI, once).
    seen: set[int] = set()
    for _ in range(50):
        ports = free_ports(6)
        assert len(set(ports)) == 6
        assert not seen & set(ports)
        seen |= set(ports)
