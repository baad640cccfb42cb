"""wire.addr.parse_addr: the one address parser refuses what the resolver would choke on."""

from __future__ import annotations

import pytest

from raftkv.node.settings import parse_addr as reexported
from raftkv.node.settings import parse_cluster
from wire.addr import parse_addr


def test_good_addresses() -> None:
    assert parse_addr("127.0.0.1:7101") == ("127.0.0.1", 7101)
    assert parse_addr("[::1]:7101") == ("::1", 7101)
    assert parse_addr("node1:7101") == ("node1", 7101)
    assert parse_addr("raftkv_node1_1.dns.podman.:1") == ("raftkv_node1_1.dns.podman.", 1)
    assert parse_addr("bücher.example:65535") == ("bücher.example", 65535)
    assert parse_addr("0.0.0.0:0", listen=True) == ("0.0.0.0", 0)
    assert reexported is parse_addr


@pytest.mark.parametrize("bad", [
    "7101", "host:", ":7101", "host:0", "host:99999", "127.0.0.1:99999", "host:-1",
    "host:+80", "host: 80", "host:\u0667\u0660\u0660\u0660",  # isdigit() digits
    "a..b:7000",  # empty label: IDNA (the resolver's UnicodeError)
    ".:7000", "-a:7000", "a-:7000", "a b:7000", "a\x00b:7000", "a/b:7000",
    "x" * 64 + ":7000", ".".join(["a" * 63] * 4) + ":7000",  # label > 63, name > 253
    "::1:7000", "[::zz]:7000", "[127.0.0.1]:7000",  # IPv6 needs brackets; brackets need IPv6
    "999.1.1.1:7000", "1.2.3:7000",
    "\u200b:7000",  # not IDNA-encodable
])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(bad)


def test_cluster_ids_are_bounded() -> None:
    assert parse_cluster("1=a:1,9223372036854775807=b:2") == {1: "a:1", 2**63 - 1: "b:2"}
    for bad in ("0=a:1", "9223372036854775808=a:1", "1=a..b:1", "x=a:1"):
        with pytest.raises(ValueError):
            parse_cluster(bad)
