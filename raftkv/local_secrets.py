"""``raftkv secrets init``: one directory with everything a secured cluster needs.

For the secured compose file (``docker-compose.secure.yml``, whose init container runs it
into a volume the nodes mount read-only) and for anyone setting a cluster up by hand:

- ``ca.crt/key``, ``node.crt/key``, ``client.crt/key``: ``raftkv certs create`` with
  ``--hosts`` (the node certificate serves the client port, the peer links both ways and
  the metrics port);
- ``peer-secret``: 64 hex digits for ``--peer-secret-file``;
- ``admin-password`` and ``users.acl``: an ACL file with ``user default off`` and
  ``user admin on #<sha256 of the password> ~* +@all`` (the file holds only the digest);
- ``metrics-token``: for ``--metrics-token-file`` and the scraper;
- ``ready``: written last, so whoever waits for the directory knows it is complete.

Secrets are 0600 and made once: what exists is kept, so running it again (every
``compose up``) changes nothing, and a directory holding only some files is completed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from raftkv import certs
from raftkv.node.peer_auth import ensure_secret_file

PEER_SECRET = "peer-secret"
ADMIN_PASSWORD = "admin-password"
ACL_FILE = "users.acl"
METRICS_TOKEN = "metrics-token"
READY = "ready"
CERT_FILES = ("ca.crt", "ca.key", "node.crt", "node.key", "client.crt", "client.key")


def _write_new(path: Path, text: str) -> bool:
    """Write ``text`` to a new 0600 file; False if it exists (then it is kept)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def init(out: Path, hosts: tuple[str, ...], user: str = "admin") -> list[Path]:
    """Make what is missing in ``out``; the files written this time."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    present = [name for name in CERT_FILES if (out / name).exists()]
    if not present:
        written += certs.create(out, hosts)
    elif len(present) != len(CERT_FILES):
        missing = sorted(set(CERT_FILES) - set(present))
        raise FileExistsError(f"{out} holds some certificate files but not {', '.join(missing)}"
                              "; remove the others or make them all")
    for name in (PEER_SECRET, METRICS_TOKEN):
        if not (out / name).exists():
            ensure_secret_file(out / name)
            written.append(out / name)
    password_file = out / ADMIN_PASSWORD
    if _write_new(password_file, secrets.token_urlsafe(24) + "\n"):
        written.append(password_file)
    password = password_file.read_text().strip()
    digest = hashlib.sha256(password.encode()).hexdigest()
    if _write_new(out / ACL_FILE, "# made by `raftkv secrets init`; the password is in "
                                  f"{ADMIN_PASSWORD}\nuser default off\n"
                                  f"user {user} on #{digest} ~* +@all\n"):
        written.append(out / ACL_FILE)
    if _write_new(out / READY, "complete\n"):
        written.append(out / READY)
    return written
