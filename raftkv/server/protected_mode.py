"""Protected mode for the client port (Redis's protected-mode, issue 13): a client address
beyond loopback needs client authentication, or ``--insecure`` to say the network is
trusted. The peer side is raftkv.node.security; both run before a node starts.

"Client authentication" means a new connection is not let in as an all-powerful
anonymous user: ``--requirepass``, or an ``--acl-file`` whose default user has a password
or is off. An ACL file that leaves ``default`` on and ``nopass`` protects nothing.
"""

from __future__ import annotations

from raftkv.node.security import exposed_addresses
from raftkv.server.acl import AccessControl


class ProtectedModeError(ValueError):
    """The node must not start as configured; the text names the flags that fix it."""


def client_auth_warnings(client_addr: str, acl: AccessControl, insecure: bool) -> list[str]:
    """[] or the --insecure warning; ProtectedModeError if the node must not start."""
    if not exposed_addresses({"--client-addr": client_addr}) or acl.required:
        return []
    how = ("the default user of --acl-file is on and nopass" if acl.acl_file
           else "no --requirepass or --acl-file is given")
    if insecure:
        return [f"--insecure: --client-addr {client_addr} is reachable beyond loopback and "
                f"clients are not authenticated ({how}): anyone who reaches it can read, "
                f"overwrite and flush every key and change the membership"]
    raise ProtectedModeError(
        f"refusing to start: --client-addr {client_addr} is not a loopback address and "
        f"clients are not authenticated ({how}). Give --requirepass PASSWORD (better: env "
        f"RAFTKV_REQUIREPASS) or --acl-file FILE whose default user has a password or is "
        f"off, or --insecure on a trusted network.")
