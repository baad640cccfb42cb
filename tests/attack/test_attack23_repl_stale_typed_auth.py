"""attack23: once a password typed in raftkv-cli's REPL stops working (the user's password
was changed), the REPL can no longer run anything, not even the ``AUTH`` with the new
password or ``RESET``: it is stuck until it is restarted.

fix22b made a successful typed ``AUTH user pw`` the credentials of every connection the
REPL opens (client/typed_auth.py). Every command after a reconnect now first opens a
connection authenticated as ``user/pw``; when that password is no longer valid (changed in
the ACL file and the nodes restarted, a rotation) the handshake fails with WRONGPASS, the
command is never sent, and that includes the ``AUTH user newpw`` that would fix it and the
``RESET`` meant to go back to ``--user/--pass``. Live (3 nodes, ACL file)::

    raftkv> AUTH app apppw
    OK
    (app's password changed to newpw, nodes restarted)
    raftkv> RESET
    could not reach any node: 127.0.0.1:48705: AUTH failed: WRONGPASS invalid ... (each node)
    raftkv> AUTH app newpw
    could not reach any node: 127.0.0.1:37575: AUTH failed: WRONGPASS invalid ...

Before fix22b the REPL reconnected as ``--user/--pass`` (here none: ``default``) and the
typed ``AUTH app newpw`` went through.

Right: a typed ``AUTH``/``HELLO .. AUTH`` (which replaces the connection's credentials
anyway) and ``RESET`` (which goes back to the command line's) must still reach a node
when the kept credentials are refused, e.g. by opening that connection with the
credentials the command itself carries, or with the command line's.

And at once: the client asked the refusing nodes again until its ``--timeout`` (20 s
here, then) before the REPL fell back. With an hour's ``--timeout`` a REPL that waits for
it leaves ``Repl.ask`` without a line (its 60 s bound), and the test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from repl_pipes import Repl

from chaos.cluster import LocalCluster

pytestmark = pytest.mark.timeout(150)

ACL = "user admin on >s3cret ~* &* +@all\nuser app on >{pw} ~app:* +@all -@admin -@dangerous\n"


@pytest.fixture
def acl_and_cluster(tmp_path: Path) -> Iterator[tuple[Path, LocalCluster]]:
    acl = tmp_path / "users.acl"
    acl.write_text(ACL.format(pw="apppw"))
    with LocalCluster(tmp_path / "c", fsync="never",
                      extra_args=["--acl-file", str(acl)]) as c:
        c.wait_for_leader()
        yield acl, c


def test_a_new_password_can_be_typed_after_the_old_one_stopped_working(
        acl_and_cluster: tuple[Path, LocalCluster]) -> None:
    acl, cluster = acl_and_cluster
    repl = Repl(",".join(n.client_addr for n in cluster.nodes.values()), timeout=3600)
    try:
        assert repl.ask("AUTH app apppw") == "OK"
        assert repl.ask("ACL WHOAMI") == "app"
        for node_id in cluster.nodes:  # app's password rotated: every node restarted
            cluster.stop(node_id)
        acl.write_text(ACL.format(pw="newpw"))
        cluster.start()
        cluster.wait_for_leader()
        reset = repl.ask("RESET")  # back to the command line's (none: default)
        auth = repl.ask("AUTH app newpw")
        whoami = repl.ask("ACL WHOAMI")
    finally:
        repl.close()
    assert (reset, auth, whoami) == ("RESET", "OK", "app"), (reset, auth, whoami)
