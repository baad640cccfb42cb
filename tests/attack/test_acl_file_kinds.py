"""``ACL LOAD`` reads --acl-file on the event loop (attack3). A FIFO in its place (an
operator's mistake, or anyone who may write to that directory) made ``open`` block until a
writer came: the node's loop stopped (no heartbeats, no clients) for good. A device such as
/dev/zero was read up to the 4 MiB bound. Both must be refused at once, like the data
directory's files; a symlink to a regular file (how Kubernetes mounts a Secret) still loads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from raftkv.server.acl import ACLError, load_acl_file

LINE = "user admin on >pw ~* +@all\n"


def _load_in_thread(path: str) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(load_acl_file(path))
        except ACLError as exc:
            out.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "users.acl"
    os.mkfifo(fifo)
    thread, out = _load_in_thread(str(fifo))
    thread.join(3)
    blocked = thread.is_alive()
    if blocked:  # let the thread go: open the FIFO's other end, write, close
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, LINE.encode())
        os.close(fd)
        thread.join(3)
    assert not blocked, "ACL LOAD of a FIFO blocked (the node's event loop, in a node)"
    assert isinstance(out[0], ACLError) and "regular file" in str(out[0]), out


def test_a_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ACLError, match="regular file"):
        load_acl_file("/dev/zero")


def test_a_symlink_to_a_regular_file_loads(tmp_path: Path) -> None:
    real = tmp_path / "real.acl"
    real.write_text(LINE)
    link = tmp_path / "users.acl"
    link.symlink_to(real)
    assert "admin" in load_acl_file(str(link))
