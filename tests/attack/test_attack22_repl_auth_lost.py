"""raftkv-cli's REPL forgets an ``AUTH`` typed in it: after a reconnect (a failover, a
restart) its commands run as the ``default`` user, and ``SUBSCRIBE`` (a connection of its
own) runs as ``default`` at once (attack22).

The REPL sends ``AUTH app apppw`` through its client like any command; the node
authenticates that connection, but the client's credentials (``Security``, from
``--user/--pass``) stay empty, so every connection it opens later is unauthenticated.
Live (3 nodes, an ACL file with ``user app on >apppw ~app:* +@all -@admin -@dangerous`` and
no ``default`` line, so ``default`` is ``nopass`` with every right)::

    raftkv> AUTH app apppw
    OK
    raftkv> ACL WHOAMI
    app
    raftkv> SET other 1
    NOPERM No permissions to access a key
    (the leader is killed; the REPL reconnects to the new one)
    raftkv> ACL WHOAMI
    default
    raftkv> SET other 2
    OK                                   # written as another user, without a word

With ``default`` turned off (or a ``--requirepass``) every command after the failover
answers NOAUTH instead; either way the session is no longer the user's. ``SUBSCRIBE ch``
right after the ``AUTH`` subscribes as ``default`` too (app has no channels: it must be
refused).

Right: the REPL keeps the credentials of an ``AUTH`` (and ``HELLO ... AUTH``) that
succeeded and authenticates every connection it opens with them, as with ``--user/--pass``
(redis-cli keeps a typed AUTH for its reconnects); until it can, it must not run the
user's commands as someone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from repl_pipes import Repl

from chaos.cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)

ACL = ("user admin on >s3cret ~* &* +@all\n"
       "user app on >apppw ~app:* +@all -@admin -@dangerous\n")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    acl = tmp_path / "users.acl"
    acl.write_text(ACL)
    with LocalCluster(tmp_path / "c", fsync="never",
                      extra_args=["--acl-file", str(acl)]) as c:
        c.wait_for_leader()
        yield c


def test_a_typed_auth_survives_a_reconnect(cluster: LocalCluster) -> None:
    repl = Repl(",".join(n.client_addr for n in cluster.nodes.values()))
    try:
        assert repl.ask("AUTH app apppw") == "OK"
        assert repl.ask("ACL WHOAMI") == "app"
        assert repl.ask("SET other 1").startswith("NOPERM")
        for node_id in cluster.nodes:  # every connection the REPL had is gone
            cluster.stop(node_id)
        cluster.start()
        cluster.wait_for_leader()
        whoami = repl.ask("ACL WHOAMI")
        wrote = repl.ask("SET other 2")
    finally:
        repl.close()
    assert whoami == "app", f"after a reconnect the REPL runs as {whoami!r}"
    assert wrote.startswith("NOPERM"), f"SET other 2 as app answered {wrote!r}"
