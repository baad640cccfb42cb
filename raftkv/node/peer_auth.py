"""Peer authentication by a shared secret: a mutual HMAC challenge-response in the Hello.

Every node of a cluster reads the same secret (``--peer-secret-file``). On each peer
connection both sides send a fresh random nonce in their Hello; each then proves it knows
the secret by sending ``Proof(HMAC-SHA256(secret, context || dialer nonce || listener nonce
|| its node id || cluster id))``, and checks the other's proof with
``hmac.compare_digest`` before it accepts any other frame. The context differs by role
(dialer, listener), so a proof cannot be reflected back at the node that made it; both
nonces are in every proof, so it cannot be replayed on another connection; the id and the
cluster id bind it to who claims to speak, and for which cluster.

A node without a secret sends an empty nonce, which a node with one refuses (and the other
way round): a secured cluster never talks to an unsecured node.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

NONCE_BYTES = 32
MIN_SECRET_BYTES = 16  # after stripping surrounding whitespace
MAX_SECRET_BYTES = 4096

DIALER = b"raftkv peer auth v1: dialer\x00"
LISTENER = b"raftkv peer auth v1: listener\x00"


class SecretFileError(Exception):
    """The peer secret file is missing, unreadable, too short or too long."""


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def proof(secret: bytes, context: bytes, dialer_nonce: bytes, listener_nonce: bytes,
          node_id: int, cluster_id: str) -> bytes:
    """What the side ``context`` (DIALER or LISTENER) with ``node_id`` sends as its Proof.

    Every field before the cluster id has a fixed length, so the message is unambiguous."""
    message = b"".join((context, dialer_nonce, listener_nonce, node_id.to_bytes(8, "big"),
                        cluster_id.encode()))
    return hmac.new(secret, message, hashlib.sha256).digest()


def verify(secret: bytes, got: bytes, context: bytes, dialer_nonce: bytes,
           listener_nonce: bytes, node_id: int, cluster_id: str) -> bool:
    """Constant-time check of a peer's proof."""
    expected = proof(secret, context, dialer_nonce, listener_nonce, node_id, cluster_id)
    return hmac.compare_digest(expected, got)


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """The secret in ``path`` (surrounding whitespace stripped, so ``echo`` output works).

    At least 16 bytes: a short secret can be brute-forced from one recorded handshake."""
    try:
        # Without blocking, and only a regular file: the file is read twice (the CLI's
        # check, then the node's start), so a pipe (``<(...)``) was empty the second time
        # and a FIFO with no writer blocked ``open`` (attack5). Links are followed (a
        # Kubernetes Secret is a symlink).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SecretFileError(f"peer secret file {path} is not a regular file")
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretFileError(f"cannot read peer secret file {path}: {exc.strerror}") from exc
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(f"peer secret file {path} is over {MAX_SECRET_BYTES} bytes")
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretFileError(f"peer secret file {path} holds {len(secret)} bytes; at least "
                              f"{MIN_SECRET_BYTES} are needed (e.g. "
                              f"`openssl rand -hex 32 > {path}`)")
    return secret


def loose_permissions(path: str | os.PathLike[str]) -> bool:
    """True if group or others may read the secret file (worth a warning, like ssh)."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def ensure_secret_file(path: Path) -> Path:
    """Create ``path`` with a random secret, mode 0600, unless it exists (``raftkv up``)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path
