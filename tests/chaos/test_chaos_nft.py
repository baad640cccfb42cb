"""The nftables backend: the rules it writes, and (in a throwaway network namespace, as the
suite itself runs) that they really cut exactly one directed link, silently."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from chaos.nft import PEER_PORT, NftNet, host, link_port


def test_each_directed_link_has_its_own_port_rewritten_to_the_peer_port() -> None:
    net = NftNet([1, 2, 3])
    assert net.peer_map(1) == {2: f"127.0.0.2:{link_port(1, 2)}",
                               3: f"127.0.0.3:{link_port(1, 3)}"}
    ports = {link_port(i, j) for i in (1, 2, 3) for j in (1, 2, 3) if i != j}
    assert len(ports) == 6 and PEER_PORT not in ports
    rules = net.setup_ruleset()
    assert "table inet raftkv_chaos" in rules
    assert "type nat hook output" in rules and "type filter hook input" in rules
    assert (f"ip daddr {host(3)} tcp dport {link_port(2, 3)} dnat ip to {host(3)}:{PEER_PORT}"
            in rules)
    assert rules.count("dnat ip to") == 6


def test_cuts_replace_each_other_and_match_the_original_port() -> None:
    net = NftNet([1, 2, 3])
    text = net.cut_ruleset({(1, 2), (3, 1)})
    assert text.splitlines() == [
        "flush chain inet raftkv_chaos cut",
        f"add rule inet raftkv_chaos cut meta l4proto tcp ct original proto-dst "
        f"{{ {link_port(1, 2)}, {link_port(3, 1)} }} drop",
    ]
    assert net.cut_ruleset(()) == "flush chain inet raftkv_chaos cut\n"
    assert net.teardown_ruleset() == "delete table inet raftkv_chaos\n"
    assert "latency" not in net.kinds and "bridge" in net.kinds


SCRIPT = textwrap.dedent("""
    import socket, subprocess, trio
    from chaos.nft import NftNet, bring_up_loopback, link_port, host, PEER_PORT

    bring_up_loopback()
    net = NftNet([1, 2])
    srv = socket.create_server((host(2), PEER_PORT))

    def dial():
        s = socket.create_connection((host(2), link_port(1, 2)), timeout=1)
        conn, _ = srv.accept()
        s.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        return s, conn

    def silent(s, conn):
        s.sendall(b"x")
        conn.settimeout(1)
        try:
            conn.recv(1)
        except TimeoutError:
            pass
        else:
            raise AssertionError("a cut link delivered data")
        try:
            socket.create_connection((host(2), link_port(1, 2)), timeout=1)
        except TimeoutError:
            pass
        else:
            raise AssertionError("connected through a cut")

    trio.run(net.setup)
    s, conn = dial()
    print("through the link port: ok")
    trio.run(net.cut, {(1, 2)})
    silent(s, conn)
    print("cut: silent")
    trio.run(net.cut, {(2, 1)})
    dial()
    print("other direction cut only: ok")
    trio.run(net.heal)
    dial()
    print("healed: ok")
    trio.run(net.close)
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    print("tables left:", out.strip() or "none")
""")


def test_rules_cut_exactly_one_directed_link_in_a_private_namespace() -> None:
    out = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", SCRIPT],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "through the link port: ok", "cut: silent", "other direction cut only: ok",
        "healed: ok", "tables left: none"]
