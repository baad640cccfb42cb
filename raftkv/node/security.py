"""Peer-security settings checked before a node starts: the secret file and the TLS files
load, and protected mode (like Redis's): a listen address beyond loopback needs peer
authentication unless ``--insecure`` says the network is trusted. The client side (AUTH)
is raftkv.server.protected_mode."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from raftkv.node.peer_auth import SecretFileError, load_secret, loose_permissions
from raftkv.node.tls import TLSConfigError, peer_tls
from wire.addr import parse_addr


class SecurityConfigError(ValueError):
    """A peer-security flag that cannot work; the text names the flag and the fix."""

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and the usual localhost names; anything else (0.0.0.0, a LAN IP,
    a name that may resolve anywhere) counts as exposed."""
    host = host.strip("[]")
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposed_addresses(addrs: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (flag, address) pairs whose host is not loopback."""
    return [(flag, addr) for flag, addr in addrs.items()
            if not is_loopback_host(parse_addr(addr)[0])]


def security_warnings(client_addr: str, peer_addr: str, options: Mapping[str, Any]) -> list[str]:
    """Raise SecurityConfigError for a setting that must not start; else the warnings."""
    warnings: list[str] = []
    path = options.get("peer_secret_file")
    if path:
        try:
            load_secret(path)
        except SecretFileError as exc:
            raise SecurityConfigError(f"--peer-secret-file: {exc}") from exc
        if loose_permissions(path):
            warnings.append(f"peer secret file {path} is readable by group or others "
                            f"(chmod 600 it)")
    parts = ("cert", "key", "ca")
    tls = [options.get(f"peer_tls_{part}") for part in parts]
    if any(tls) and not all(tls):
        missing = [f"--peer-tls-{part}" for part, v in zip(parts, tls, strict=True) if not v]
        raise SecurityConfigError(f"peer TLS needs --peer-tls-cert, --peer-tls-key and "
                                  f"--peer-tls-ca; missing {', '.join(missing)}")
    if all(tls):
        try:
            peer_tls(*tls)
        except TLSConfigError as exc:
            raise SecurityConfigError(str(exc)) from exc
    exposed = exposed_addresses({"--client-addr": client_addr, "--peer-addr": peer_addr})
    if not exposed or path or all(tls):
        return warnings
    where = ", ".join(f"{flag} {addr}" for flag, addr in exposed)
    if options.get("insecure"):
        return [*warnings, f"--insecure: {where} reachable beyond loopback and peers are not "
                           f"authenticated: anyone who reaches the peer port can change the "
                           f"cluster"]
    raise SecurityConfigError(
        f"refusing to start: {where} is not a loopback address and peers are not "
        f"authenticated. Give --peer-secret-file FILE (a shared secret, e.g. `openssl rand "
        f"-hex 32`) or --peer-tls-cert/--peer-tls-key/--peer-tls-ca (mutual TLS; "
        f"`raftkv certs create` makes them), or --insecure on a trusted network.")
