"""ACL users and the client port's AUTH/ACL/HELLO checks (raftkv.server.acl, auth), without
a node: the command path runs against a stand-in node that records what it would propose."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

import raftkv.serve
from client.security import NOT_NEEDED, HandshakeFailed, check_auth_reply
from raftkv.cli import main
from raftkv.node.log_throttle import LogThrottle
from raftkv.probe import AUTH_NOT_NEEDED, call
from raftkv.server import auth
from raftkv.server.acl import (
    COMMAND_CATEGORIES,
    AccessControl,
    ACLError,
    command_id,
    parse_acl_text,
)
from raftkv.server.commands import LOCAL, TRANSACTION, _command_names, execute
from raftkv.server.connection import Connection
from raftkv.server.transaction import multi
from wire.reply import OK, ErrorReply, SimpleString

ACL = """\
# operators
user admin on >adminpw ~* +@all
user reader on >readpw ~app:* +@read +@connection -info
user writer on #{h} allkeys +@all -@admin -@dangerous
user gone off >gonepw ~* +@all
"""
HASH = hashlib.sha256(b"writepw").hexdigest()


def acl_file(tmp_path: Path, text: str = ACL) -> str:
    path = tmp_path / "users.acl"
    path.write_text(text.replace("{h}", HASH))
    return str(path)


def fake_node(acl: AccessControl) -> Any:
    submitted: list[list[bytes]] = []
    node = SimpleNamespace(
        id=1, settings=SimpleNamespace(enable_scripts=False, max_request_bytes=1 << 20,
                                  max_keys_per_command=1024),
        submit=lambda args: submitted.append(args) or SimpleNamespace(value="proposed"),
        submitted=submitted, client_server=SimpleNamespace(acl=acl, connections={}),
        core=SimpleNamespace(leader_id=1))
    return node


def run(node: Any, conn: Connection, *words: str | bytes) -> Any:
    args = [w.encode() if isinstance(w, str) else w for w in words]
    if conn.server is None:
        conn.server = node.client_server  # the port it came in on, with the node's users
    return execute(node, conn, args).value


def conn_for(acl: AccessControl) -> Connection:
    return Connection(1, "127.0.0.1:5000", user=acl.initial_user())


def test_every_command_has_categories_and_the_admin_ones_are_admin() -> None:
    names = {n.decode() for n in _command_names()}
    missing = names - set(COMMAND_CATEGORIES)
    assert not missing
    unknown = {cid.split("|")[0] for cid in COMMAND_CATEGORIES} - names
    assert not unknown  # no category for a command that does not exist
    for cid in ("flushall", "flushdb", "raft", "raft|removenode", "raft|addnode",
                "raft|promote", "raft|transfer", "raft|snapshot", "config|set", "acl|load",
                "acl|list"):
        assert {"admin", "dangerous"} <= COMMAND_CATEGORIES[cid], cid
    assert "admin" not in COMMAND_CATEGORIES["acl|whoami"]
    assert {"read"} <= COMMAND_CATEGORIES["get"] and {"write"} <= COMMAND_CATEGORIES["set"]
    assert set(LOCAL) | set(TRANSACTION) >= {b"auth", b"acl"}


def test_without_auth_configured_everyone_is_default() -> None:
    acl = AccessControl.configure()
    conn = conn_for(acl)
    node = fake_node(acl)
    assert conn.user == "default"
    run(node, conn, "SET", "k", "v")
    assert node.submitted == [[b"SET", b"k", b"v"]]
    assert run(node, conn, "AUTH", "x") == auth.NO_DEFAULT_PASSWORD
    assert run(node, conn, "ACL", "WHOAMI") == b"default"


def test_requirepass() -> None:
    acl = AccessControl.configure(requirepass="s3cret")
    node, conn = fake_node(acl), conn_for(acl)
    assert conn.user is None
    for words in (("GET", "k"), ("SET", "k", "v"), ("MULTI",), ("RAFT", "REMOVENODE", "2"),
                  ("ACL", "WHOAMI"), ("PING",), ("INFO",)):
        assert run(node, conn, *words) == auth.NOAUTH, words
    assert node.submitted == []
    assert run(node, conn, "HELLO", "3") == auth.HELLO_NOAUTH and conn.proto == 2
    assert run(node, conn, "AUTH", "wrong") == auth.WRONGPASS and conn.user is None
    assert run(node, conn, "AUTH", "default", "wrong") == auth.WRONGPASS
    assert run(node, conn, "AUTH", "s3cret") == OK and conn.user == "default"
    run(node, conn, "SET", "k", "v")
    assert node.submitted == [[b"SET", b"k", b"v"]]
    assert run(node, conn, "AUTH") == ErrorReply(
        "ERR wrong number of arguments for 'auth' command")


def test_hello_auth_is_checked_never_accepted() -> None:
    acl = AccessControl.configure(requirepass="s3cret")
    node, conn = fake_node(acl), conn_for(acl)
    reply = run(node, conn, "HELLO", "3", "AUTH", "default", "bad", "SETNAME", "x")
    assert reply == auth.WRONGPASS and conn.user is None and conn.proto == 2
    assert conn.name == ""
    reply = run(node, conn, "HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "x")
    assert isinstance(reply, dict) and reply["proto"] == 3
    assert conn.user == "default" and conn.proto == 3 and conn.name == "x"


def test_acl_file_users(tmp_path: Path) -> None:
    acl = AccessControl.configure(acl_file=acl_file(tmp_path))
    node = fake_node(acl)
    # No default user in the file: the default one, nopass, all commands.
    assert acl.initial_user() == "default"
    reader = Connection(2, "127.0.0.1:5001")
    assert run(node, reader, "AUTH", "reader", "readpw") == OK
    assert run(node, reader, "SET", "app:1", "v") == ErrorReply(
        "NOPERM User reader has no permissions to run the 'set' command")
    assert run(node, reader, "GET", "other") == auth.KEY_DENIED
    assert run(node, reader, "MGET", "app:1", "other") == auth.KEY_DENIED
    assert run(node, reader, "INFO") == ErrorReply(
        "NOPERM User reader has no permissions to run the 'info' command")
    assert node.submitted == []
    run(node, reader, "GET", "app:1")
    run(node, reader, "MGET", "app:1", "app:2")
    assert len(node.submitted) == 2
    # ACL WHOAMI is @slow only, as in Redis: not in +@read +@connection.
    assert run(node, reader, "ACL", "WHOAMI") == ErrorReply(
        "NOPERM User reader has no permissions to run the 'acl|whoami' command")
    writer = Connection(3, "127.0.0.1:5002")
    assert run(node, writer, "AUTH", "writer", "writepw") == OK
    assert run(node, writer, "FLUSHALL") == ErrorReply(
        "NOPERM User writer has no permissions to run the 'flushall' command")
    assert run(node, writer, "RAFT", "REMOVENODE", "2") == ErrorReply(
        "NOPERM User writer has no permissions to run the 'raft|removenode' command")
    assert run(node, writer, "ACL", "LIST") == ErrorReply(
        "NOPERM User writer has no permissions to run the 'acl|list' command")
    assert run(node, writer, "KEYS", "*") == ErrorReply(
        "NOPERM User writer has no permissions to run the 'keys' command")
    assert run(node, writer, "ACL", "WHOAMI") == b"writer"
    off = Connection(4, "127.0.0.1:5003")
    assert run(node, off, "AUTH", "gone", "gonepw") == auth.WRONGPASS
    assert run(node, off, "AUTH", "nobody", "x") == auth.WRONGPASS
    # Redis's INFO stats counters (no WRONGPASS above this test's first AUTHs).
    assert acl.stats == {"acl_access_denied_auth": 2, "acl_access_denied_cmd": 7,
                         "acl_access_denied_key": 2, "acl_access_denied_channel": 0}


def test_a_denied_command_in_multi_aborts_it(tmp_path: Path) -> None:
    acl = AccessControl.configure(acl_file=acl_file(tmp_path))
    node = fake_node(acl)
    conn = Connection(2, "127.0.0.1:5001", user="reader")
    multi(conn.tx)
    assert isinstance(run(node, conn, "SET", "app:1", "v"), ErrorReply)
    assert conn.tx.dirty and node.submitted == []


def test_acl_list_shows_no_password_and_reloads_all_or_nothing(tmp_path: Path) -> None:
    path = acl_file(tmp_path)
    acl = AccessControl.configure(acl_file=path)
    node = fake_node(acl)
    conn = Connection(1, "127.0.0.1:5000", user="admin")
    lines = run(node, conn, "ACL", "LIST")
    text = b"\n".join(lines).decode()
    assert "adminpw" not in text and hashlib.sha256(b"adminpw").hexdigest() in text
    assert "user default on nopass ~* &* +@all" in text  # Redis's default user: all channels
    assert run(node, conn, "ACL", "USERS") == [b"admin", b"default", b"gone", b"reader",
                                               b"writer"]
    assert b"read" in run(node, conn, "ACL", "CAT")
    assert b"raft|removenode" in run(node, conn, "ACL", "CAT", "admin")
    assert run(node, conn, "ACL", "CAT", "nope") == ErrorReply("ERR Unknown category 'nope'")
    # A broken file: ACL LOAD fails naming the line, and the users stay as they were.
    Path(path).write_text("user admin on >new ~* +@all\nuser x on +@nosuch\n")
    reply = run(node, conn, "ACL", "LOAD")
    assert isinstance(reply, ErrorReply) and f"{path}:2:" in str(reply)
    assert "Unknown command or category name in ACL" in str(reply)
    assert acl.authenticate("admin", b"adminpw")
    # A good one: the new password works, the old does not; a removed user is logged out.
    Path(path).write_text("user admin on >new ~* +@all\n")
    assert run(node, conn, "ACL", "LOAD") == OK
    assert acl.authenticate("admin", b"new") and not acl.authenticate("admin", b"adminpw")
    reader = Connection(2, "127.0.0.1:5001", user="reader")
    assert run(node, reader, "GET", "app:1") == auth.NOAUTH and reader.user is None


def test_too_many_failures_close_the_connection() -> None:
    acl = AccessControl.configure(requirepass="s3cret")
    node, conn = fake_node(acl), conn_for(acl)
    for _ in range(auth.MAX_AUTH_FAILURES - 1):
        assert run(node, conn, "AUTH", "guess") == auth.WRONGPASS
        assert not conn.closing
    assert run(node, conn, "AUTH", "guess") == auth.WRONGPASS
    assert conn.closing


def test_password_is_never_logged(caplog: pytest.LogCaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A throttle of its own: the module's caps the lines of every test in this process.
    monkeypatch.setattr(auth, "_throttle", LogThrottle(auth.log, 10.0, max_lines=auth.LOG_LINES))
    acl = AccessControl.configure(requirepass="s3cret")
    node = fake_node(acl)
    conn = Connection(1, "127.0.0.77:5000")  # a host no other test's throttled line used
    # (raftkv's loggers may not propagate once a test ran setup_logging: listen directly)
    logging.getLogger("raftkv.auth").addHandler(caplog.handler)
    try:
        with caplog.at_level("DEBUG", logger="raftkv.auth"):
            for _ in range(auth.MAX_AUTH_FAILURES):
                run(node, conn, "AUTH", "default", "hunter2-guess")
    finally:
        logging.getLogger("raftkv.auth").removeHandler(caplog.handler)
    messages = {r.getMessage() for r in caplog.records}
    assert any("failed authentication" in m for m in messages)
    assert any("closing client" in m for m in messages)
    assert all("hunter2" not in repr(r.__dict__) for r in caplog.records)
    assert "s3cret" not in repr(acl)


@pytest.mark.parametrize(("text", "error"), [
    ("usr x on", "line should start with user keyword"),
    ("user x on +@nosuch", "Unknown command or category name in ACL"),
    ("user x on +nosuchcmd", "Unknown command or category name in ACL"),
    ("user x on #abc", "The password hash must be exactly 64"),
    ("user x on bogus", "Syntax error"),
    ("user x on %R~foo", "not supported"),
    ("user x on\nuser x off", "Duplicate user 'x'"),
])
def test_bad_acl_lines(text: str, error: str) -> None:
    with pytest.raises(ACLError, match=error):
        parse_acl_text(text, "f.acl")


def test_rules_apply_in_order_and_redis_files_load() -> None:
    users = parse_acl_text(
        "user default on nopass sanitize-payload ~* &* +@all\n"
        "user ops on >p resetchannels ~* +@all -@admin +raft|status\n", "f")
    ops = users["ops"]
    assert ops.may_run("raft|status") and not ops.may_run("raft|removenode")
    assert ops.may_run("get") and not ops.may_run("flushall")
    assert command_id([b"RAFT", b"Status"]) == "raft|status"
    assert command_id([b"raft", b"bogus"]) == "raft"
    with pytest.raises(ACLError, match="--requirepass"):
        parse_acl_text("user default on >x ~* +@all", "f", requirepass="y")


def test_serve_refuses_a_bad_acl_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(raftkv.serve, "run_node", started.append)
    bad = tmp_path / "bad.acl"
    bad.write_text("user ok on >x ~* +@all\nuser x on +@nosuch\n")
    base = ["serve", "--id", "1", "--cluster", "1=127.0.0.1:7101",
            "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(main, [*base, "--acl-file", str(bad)], env={})
    assert result.exit_code == 2 and not started
    assert f"{bad}:2:" in result.output and "Unknown command or category" in result.output
    result = CliRunner().invoke(main, base, env={"RAFTKV_REQUIREPASS": "pw"})
    assert result.exit_code == 0, result.output
    assert started[0].requirepass == "pw" and "pw" not in repr(started[0])


def test_scripts_only_for_users_who_may_do_anything_with_data(tmp_path: Path) -> None:
    acl = AccessControl.configure(acl_file=acl_file(tmp_path))
    node = fake_node(acl)
    node.settings.enable_scripts = True
    script = ("EVAL", "return redis.call('FLUSHALL')", "0")
    for user in ("reader", "writer"):  # key patterns, or no FLUSHALL: a script would escape
        conn = Connection(2, "127.0.0.1:5001", user=user)
        assert run(node, conn, *script) in (auth.SCRIPT_DENIED, ErrorReply(
            f"NOPERM User {user} has no permissions to run the 'eval' command")), user
        assert run(node, conn, "EVAL_RO", "return 1", "0") in (auth.SCRIPT_DENIED,
                                                                ErrorReply(
            f"NOPERM User {user} has no permissions to run the 'eval_ro' command"))
    assert node.submitted == []
    assert run(node, Connection(3, "127.0.0.1:5002", user="writer"),
               *script) == auth.SCRIPT_DENIED
    run(node, Connection(4, "127.0.0.1:5003", user="admin"), *script)
    assert len(node.submitted) == 1


def test_session_commands_are_checked_as_the_command_they_carry(tmp_path: Path) -> None:
    acl = AccessControl.configure(acl_file=acl_file(tmp_path))
    reader = Connection(2, "127.0.0.1:5001", user="reader")
    writer = Connection(3, "127.0.0.1:5002", user="writer")
    once = [b"RAFT", b"ONCE", b"7", b"1"]
    assert auth.gate(acl, reader, [*once, b"SET", b"app:1", b"v"]) == ErrorReply(
        "NOPERM User reader has no permissions to run the 'set' command")
    assert auth.gate(acl, reader, [*once, b"GET", b"other"]) == auth.KEY_DENIED
    assert auth.gate(acl, reader, [*once, b"GET", b"app:1"]) is None
    assert auth.gate(acl, reader, [b"RAFT", b"SESSION", b"OPEN"]) == ErrorReply(
        "NOPERM User reader has no permissions to run the 'raft|session' command")
    # A writer without @admin may use sessions, but not to carry an admin command.
    assert auth.gate(acl, writer, [b"RAFT", b"SESSION", b"OPEN"]) is None
    assert auth.gate(acl, writer, [*once, b"INCR", b"n"]) is None
    assert auth.gate(acl, writer, [*once, b"FLUSHALL"]) == ErrorReply(
        "NOPERM User writer has no permissions to run the 'flushall' command")
    assert auth.gate(acl, writer, [*once, b"RAFT", b"REMOVENODE", b"2"]) == ErrorReply(
        "NOPERM User writer has no permissions to run the 'raft|removenode' command")
    assert auth.gate(acl, writer, [b"RAFT", b"REMOVENODE", b"2"]) is not None


def test_a_password_in_the_environment_does_not_lock_out_an_open_node() -> None:
    """raftkv.probe and the client send AUTH when RAFTKV_PASSWORD is set; a node that needs
    none answers Redis's 'called without any password configured', which they pass over."""
    assert auth.NO_DEFAULT_PASSWORD.text.startswith(AUTH_NOT_NEEDED)
    assert auth.NO_DEFAULT_PASSWORD.text.startswith(NOT_NEEDED)
    check_auth_reply(auth.NO_DEFAULT_PASSWORD)
    check_auth_reply(OK)
    with pytest.raises(HandshakeFailed):
        check_auth_reply(auth.WRONGPASS)


def test_probe_passes_over_an_unneeded_password(monkeypatch: pytest.MonkeyPatch) -> None:
    replies = [b"-" + auth.NO_DEFAULT_PASSWORD.text.encode() + b"\r\n+PONG\r\n",
               b"-" + auth.WRONGPASS.text.encode() + b"\r\n+PONG\r\n"]
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for reply in replies:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=serve)
    thread.start()
    monkeypatch.setenv("RAFTKV_PASSWORD", "left-over")
    try:
        assert call(f"127.0.0.1:{port}", "PING", timeout=5) == SimpleString("PONG")
        assert call(f"127.0.0.1:{port}", "PING", timeout=5) == auth.WRONGPASS
    finally:
        thread.join(timeout=5)
        server.close()


def test_command_info_shows_the_categories_the_acl_checks() -> None:
    acl = AccessControl.configure()
    node, conn = fake_node(acl), conn_for(acl)
    (flushall,) = run(node, conn, "COMMAND", "INFO", "flushall")
    assert {c.text for c in flushall[6]} >= {"@admin", "@dangerous", "@write", "@keyspace"}
    (get,) = run(node, conn, "COMMAND", "INFO", "get")
    assert {c.text for c in get[6]} == {"@read", "@string", "@fast"}


def test_the_original_set_form_is_checked_against_the_key_patterns(tmp_path: Path) -> None:
    """attack7: ``set key=value`` (the original RaftKV's form) failed SET's arity in the
    gate, which then checked no key, and ran as ``SET key value``: a ``~app:*`` user
    overwrote any key, directly, inside MULTI and on a follower alike."""
    acl = AccessControl.configure(acl_file=acl_file(
        tmp_path, ACL + "user app on >apppw ~app:* +@all -@admin -@dangerous\n"))
    node = fake_node(acl)
    app = Connection(5, "127.0.0.1:5004", user="app")
    assert run(node, app, "set", "admin:secret=pwned") == auth.KEY_DENIED
    assert run(node, app, "SET", "admin:secret=pwned") == auth.KEY_DENIED
    multi(app.tx)
    assert run(node, app, "set", "admin:secret=pwned") == auth.KEY_DENIED
    assert app.tx.dirty and app.tx.queue == []
    assert node.submitted == []
    fresh = Connection(6, "127.0.0.1:5005", user="app")
    run(node, fresh, "set", "app:1=v")
    assert node.submitted == [[b"set", b"app:1", b"v"]]


def test_exec_checks_the_queue_again_after_acl_load(tmp_path: Path) -> None:
    """attack7: the commands of MULTI were checked only as they were queued, so a user
    narrowed by ACL LOAD between MULTI and EXEC still wrote the keys it had lost (on a
    3-node cluster: SET admin:k queued as a ~* user, ACL LOAD to ~app:*, EXEC: +OK). As
    Redis, EXEC checks them again when the users changed since MULTI, and refuses the
    whole transaction."""
    from raftkv.node.pending import Pending

    path = acl_file(tmp_path)
    acl = AccessControl.configure(acl_file=path)
    node = fake_node(acl)
    node.submit = lambda args: node.submitted.append(args) or Pending.of([OK])
    writer = Connection(3, "127.0.0.1:5002", user="writer")
    assert run(node, writer, "MULTI") == OK
    assert run(node, writer, "SET", "admin:k", "v") == SimpleString("QUEUED")
    Path(path).write_text(ACL.replace("{h}", HASH).replace(
        "writer on #" + HASH + " allkeys", "writer on #" + HASH + " ~app:*"))
    acl.reload()
    refused = run(node, writer, "EXEC")
    assert isinstance(refused, ErrorReply)
    assert refused.text.startswith("NOPERM ACLs rules changed between the moment")
    assert node.submitted == [] and writer.tx.queue is None
    # A transaction within the user's keys still runs after the reload.
    assert run(node, writer, "MULTI") == OK
    assert run(node, writer, "SET", "app:k", "v") == SimpleString("QUEUED")
    assert run(node, writer, "EXEC") == [OK]
    assert len(node.submitted) == 1
