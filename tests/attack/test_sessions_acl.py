"""Client sessions against ACL users, on a real 3-node cluster (attack3, round three).

1. The internal log commands (``once``, ``session_open``, ``session_close``, ``expired``)
   were reachable from the client port: the ACL gate lets through anything that is not in
   its category table (so that an unknown command gets Redis's unknown-command error), and
   the node's ``validate`` knows them. A user with only ``+@read`` opened a session with
   ``session_open 100000`` and ran ``once SID 1 FLUSHALL``: every key gone.
2. Session ids are the state machine's entry counter, so another user's session id is its
   own id minus a few. ``RAFT ONCE id seq CMD`` is checked as ``CMD`` only, so a user
   restricted to ``~app:*`` sent ``RAFT ONCE <admin's id> 1 SET app:x y`` and was answered
   the admin's recorded reply: the old value of ``secret`` from the admin's
   ``GETSET secret ...``. It could also push the admin's session past its sequence numbers
   (the admin's retries then fail) or ``RAFT SESSION CLOSE`` it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ACL = """\
user admin on >adminpw ~* +@all
user reader on >readpw ~* +@read +@connection
user app on >apppw ~app:* +@all -@admin -@dangerous
user default off
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("sessions-acl")
    acl = tmp / "users.acl"
    acl.write_text(ACL)
    mp = pytest.MonkeyPatch()
    mp.setenv("RAFTKV_USER", "admin")  # the harness's INFO calls (raftkv.probe)
    mp.setenv("RAFTKV_PASSWORD", "adminpw")
    c = LocalCluster(Path(tmp) / "c", fsync="never", extra_args=["--acl-file", str(acl)])
    c.start()
    try:
        c.wait_for_leader(30)
        yield c
    finally:
        c.close()
        mp.undo()


def as_user(c: LocalCluster, user: str, node: int | None = None) -> redis.Redis:
    host, port = c.client_addr(node or c.wait_for_leader(30))
    return redis.Redis(host=host, port=port, username=user, password=f"{user[:4]}pw"
                       if user != "admin" else "adminpw", socket_timeout=10,
                       retry=Retry(NoBackoff(), 0))


def reply_of(r: redis.Redis, *args: object) -> object:
    """The reply, or the error text."""
    try:
        return r.execute_command(*args)
    except redis.ResponseError as exc:
        return f"error: {type(exc).__name__}: {exc}"


def test_internal_commands_are_unknown_to_clients(cluster: LocalCluster) -> None:
    admin = as_user(cluster, "admin")
    admin.set("keep", "1")
    reader = as_user(cluster, "reader")
    assert str(reply_of(reader, "SET", "x", "y")).startswith("error: NoPermissionError")
    answers = {}
    for call in (("session_open", "100000"), ("once", "1", "1", "FLUSHALL"),
                 ("session_close", "1"), ("expired", "keep"), ("exec", "x")):
        answers[call[0]] = reply_of(reader, *call)
    sid = answers["session_open"]
    if isinstance(sid, int):  # the hole: the read-only user holds a session; use it
        answers["once flushall"] = reply_of(reader, "once", sid, 1, "FLUSHALL")
    assert admin.get("keep") == b"1", f"a read-only user emptied the store: {answers}"
    for name, answer in answers.items():
        assert str(answer).startswith("error: "), (name, answer)
    assert all("unknown command" in str(answers[name]) for name in
               ("once", "session_open", "session_close", "expired")), answers


def test_another_users_session_is_not_usable(cluster: LocalCluster) -> None:
    """The app user guesses session ids around its own (they were consecutive) and sends a
    write it may run under each: none may answer the admin's recorded reply."""
    admin = as_user(cluster, "admin")
    admin.set("secret", "the-launch-code")
    sid = admin.execute_command("RAFT", "SESSION", "OPEN", "600")
    assert admin.execute_command("RAFT", "ONCE", sid, 1, "GETSET", "secret", "new") \
        == b"the-launch-code"
    app = as_user(cluster, "app")
    assert str(reply_of(app, "GET", "secret")).startswith("error: NoPermissionError")
    own = app.execute_command("RAFT", "SESSION", "OPEN", "600")
    leaked = []
    for guess in range(max(1, own - 100), own):
        answer = reply_of(app, "RAFT", "ONCE", guess, 1, "SET", "app:x", "y")
        if answer == b"the-launch-code":
            leaked.append(guess)
    assert not leaked, (f"the app user read the admin's GETSET reply (the old secret) "
                        f"through session {leaked} (its own: {own})")
    # The admin's session is still its own: its next sequence number applies.
    assert admin.execute_command("RAFT", "ONCE", sid, 2, "INCR", "n") == 1
