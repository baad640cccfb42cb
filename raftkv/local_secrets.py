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

**What it keeps, it checks first**, with the checks a node applies at start (the peer
secret's and metrics token's loaders, the TLS files loaded as the node loads them, the ACL
file parsed and letting the user in with ``admin-password``), and more strictly: every
file must be a regular file, not a symbolic link (never followed, not even a dangling
one), and every secret 0600 (no group or other bits). Otherwise nothing is written, not
even ``ready``: ``BadFiles`` lists one line per bad file (the command prints them and exits
1). With ``force``, bad files are replaced instead: a link is removed (never what it
points to), a bad certificate file remakes the whole set (CA included), a bad
``admin-password`` remakes ``users.acl`` too. A directory in a file's place is never
removed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from raftkv import certs
from raftkv.node.peer_auth import SecretFileError, ensure_secret_file, load_secret
from raftkv.node.tls import TLSConfigError, peer_tls
from raftkv.server.acl import AccessControl, ACLError
from raftkv.server.client_tls import ClientTLSError, client_tls_context
from raftkv.server.http_auth import MetricsSecurityError, load_token

PEER_SECRET = "peer-secret"
ADMIN_PASSWORD = "admin-password"
ACL_FILE = "users.acl"
METRICS_TOKEN = "metrics-token"
READY = "ready"
CERT_FILES = ("ca.crt", "ca.key", "node.crt", "node.key", "client.crt", "client.key")
PRIVATE = ("ca.key", "node.key", "client.key", PEER_SECRET, METRICS_TOKEN, ADMIN_PASSWORD,
           ACL_FILE)
MAX_PASSWORD_BYTES = 4096


class BadFiles(Exception):
    """Files ``init`` would keep that a node would refuse (or that are not safe): one line
    each, in ``lines``."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _write_new(path: Path, text: str) -> bool:
    """Write ``text`` to a new 0600 file; False if it exists (then it is kept)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _present(path: Path) -> bool:
    """Whether anything is at ``path``, a dangling link included (``exists`` follows it)."""
    return os.path.lexists(path)


def _kind_problem(path: Path) -> str | None:
    """Why ``path`` cannot be kept whatever it holds: a link, not a regular file, or a
    secret that group or others may use."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return "is a symbolic link (secrets init never follows links)"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    if path.name in PRIVATE and mode & 0o077:
        return (f"has mode {stat.S_IMODE(mode):04o}: a secret must be 0600 "
                f"(chmod 600 {path})")
    return None


def _read_password(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_PASSWORD_BYTES + 1)
    if len(data) > MAX_PASSWORD_BYTES:
        raise ValueError(f"is over {MAX_PASSWORD_BYTES} bytes")
    try:
        password = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    if not password:
        raise ValueError("is empty")
    return password


def _usable_password(path: Path) -> str | None:
    """The password in ``path`` if it is there and good, else None."""
    if not _present(path) or _kind_problem(path) is not None:
        return None
    try:
        return _read_password(path)
    except (ValueError, OSError):
        return None


def _content_problem(out: Path, name: str, user: str) -> str | None:
    """What the node's own loader says about ``out/name``, or None if it loads."""
    path = out / name
    try:
        if name == PEER_SECRET:
            load_secret(path)
        elif name == METRICS_TOKEN:
            load_token(str(path))
        elif name == ADMIN_PASSWORD:
            _read_password(path)
        elif name == ACL_FILE:
            acl = AccessControl.configure("", str(path))
            password = _usable_password(out / ADMIN_PASSWORD)
            # (a bad password file has a line of its own)
            if password is not None and not acl.authenticate(user, password.encode()):
                return f"does not let user {user} in with the password in {ADMIN_PASSWORD}"
    except (SecretFileError, MetricsSecurityError, ACLError, ValueError, OSError) as exc:
        return str(exc)
    return None


def _cert_problems(out: Path) -> list[str]:
    """The certificate set: all six or none, each kept one safe, and both pairs load as
    the node loads them (peer TLS for node.*, a TLS context for client.*, ca.crt as CA)."""
    present = [name for name in CERT_FILES if _present(out / name)]
    if not present:
        return []
    if len(present) != len(CERT_FILES):
        missing = sorted(set(CERT_FILES) - set(present))
        return [f"{out}: holds some certificate files but not {', '.join(missing)}; remove "
                "the others or make them all"]
    problems = [f"{out / name}: {problem}" for name in CERT_FILES
                if (problem := _kind_problem(out / name)) is not None]
    if problems:
        return problems
    try:
        peer_tls(str(out / "node.crt"), str(out / "node.key"), str(out / "ca.crt"))
        client_tls_context(str(out / "client.crt"), str(out / "client.key"),
                           str(out / "ca.crt"))
    except (TLSConfigError, ClientTLSError) as exc:
        return [f"{out}: {exc}"]
    return []


def check(out: Path, user: str = "admin") -> dict[str, str]:
    """The files in ``out`` that ``init`` would keep and must not: name -> one line.
    (The certificate set counts as one name, ``certs``.)"""
    bad: dict[str, str] = {}
    cert_problems = _cert_problems(out)
    if cert_problems:
        bad["certs"] = "\n".join(cert_problems)
    for name in (PEER_SECRET, METRICS_TOKEN, ADMIN_PASSWORD, ACL_FILE, READY):
        path = out / name
        if not _present(path):
            continue
        problem = _kind_problem(path)
        if problem is not None:
            bad[name] = f"{path}: {problem}"
        elif name != READY and (problem := _content_problem(out, name, user)) is not None:
            # (the loaders' own texts name the file already)
            bad[name] = problem if str(path) in problem else f"{path}: {problem}"
    return bad


def _remove(out: Path, bad: dict[str, str]) -> None:
    """``--force``: remove what ``check`` found (links themselves, never their targets)."""
    names = list(bad)
    if "certs" in names:
        names += [name for name in CERT_FILES if _present(out / name)]
    if ADMIN_PASSWORD in names and _present(out / ACL_FILE):
        names.append(ACL_FILE)  # its digest is of the old password
    for name in names:
        path = out / name
        if name == "certs" or not _present(path):
            continue
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise BadFiles([f"{path}: is a directory; --force replaces files only"])
        path.unlink()


def init(out: Path, hosts: tuple[str, ...], user: str = "admin",
         force: bool = False) -> list[Path]:
    """Make what is missing in ``out``; the files written this time. ``BadFiles`` if a
    file it would keep is bad (see the module docstring), unless ``force``."""
    out.mkdir(parents=True, exist_ok=True)
    bad = check(out, user)
    if bad and not force:
        lines = [line for text in bad.values() for line in text.split("\n")]
        raise BadFiles(lines)
    if bad:
        _remove(out, bad)
    written: list[Path] = []
    if not any(_present(out / name) for name in CERT_FILES):
        written += certs.create(out, hosts)
    for name in (PEER_SECRET, METRICS_TOKEN):
        if not _present(out / name):
            ensure_secret_file(out / name)
            written.append(out / name)
    password_file = out / ADMIN_PASSWORD
    if _write_new(password_file, secrets.token_urlsafe(24) + "\n"):
        written.append(password_file)
    password = _read_password(password_file)
    digest = hashlib.sha256(password.encode()).hexdigest()
    if _write_new(out / ACL_FILE, "# made by `raftkv secrets init`; the password is in "
                                  f"{ADMIN_PASSWORD}\nuser default off\n"
                                  f"user {user} on #{digest} ~* +@all\n"):
        written.append(out / ACL_FILE)
    if _write_new(out / READY, "complete\n"):
        written.append(out / READY)
    return written
