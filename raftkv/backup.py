"""``raftkv backup --endpoints ... FILE``: stream a consistent backup from any node.

The first endpoint that accepts ``RAFT BACKUP`` serves it (a follower works: its copy is
taken after a ReadIndex round, so it is as linearizable as the leader's). The reply names
the Raft index the backup covers; the payload is read with ``RAFT BACKUP CHUNK`` into
``FILE.partial``, hashed as it arrives, checked against the node's SHA-256, then renamed
to ``FILE`` (raftkv.backup_file). A progress bar is shown for states over a few MiB.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from raftkv.backup_file import BackupError, BackupHeader, BackupWriter, check_target
from raftkv.probe import call
from wire.reply import ErrorReply

PROGRESS_OVER = 4 * 1024 * 1024
CALL_TIMEOUT = 30.0


def _as_dict(reply: Any) -> dict[str, Any]:
    if isinstance(reply, list):  # RESP2 flattens a map
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    if not isinstance(reply, dict):
        raise BackupError(f"unexpected RAFT BACKUP reply {reply!r}")
    return {(k.decode() if isinstance(k, bytes) else str(k)):
            (v.decode() if isinstance(v, bytes) else v) for k, v in reply.items()}


def start_backup(endpoints: list[str], deadline: float,
                 log: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    """(endpoint, session) from the first node that starts a backup; retries TRYAGAIN."""
    errors: list[str] = []
    while True:
        for addr in endpoints:
            try:
                reply = call(addr, "RAFT", "BACKUP", timeout=CALL_TIMEOUT)
            except (OSError, ConnectionError) as exc:
                errors.append(f"{addr}: {exc}")
                continue
            if isinstance(reply, ErrorReply):
                errors.append(f"{addr}: {reply.text}")
                continue
            return addr, _as_dict(reply)
        if time.monotonic() >= deadline:
            raise BackupError("no node could start a backup: " + "; ".join(errors[-3:]))
        log(f"retrying: {errors[-1]}")
        time.sleep(0.5)  # the cluster is electing or busy; nothing to wait on but time


def take_backup(endpoints: list[str], path: str, timeout: float = 30.0,
                show_progress: bool = True) -> BackupHeader:
    def log(text: str) -> None:
        click.echo(f"raftkv backup: {text}", err=True)

    check_target(path)
    addr, s = start_backup(endpoints, time.monotonic() + timeout, log)
    header = BackupHeader(
        cluster_id=str(s["cluster_id"]), index=int(s["index"]), term=int(s["term"]),
        keys=int(s["keys"]), bytes=int(s["bytes"]), sha256=str(s["sha256"]),
        created=datetime.now(UTC).isoformat(timespec="seconds"), source=addr)
    token = str(s["id"])
    try:
        writer = BackupWriter(path, header)
    except BackupError:
        with contextlib.suppress(OSError, ConnectionError):
            call(addr, "RAFT", "BACKUP", "END", token, timeout=5)
        raise
    try:
        hidden = not show_progress or header.bytes < PROGRESS_OVER
        with click.progressbar(length=header.bytes, label="backup", hidden=hidden,
                               file=click.get_text_stream("stderr")) as bar:
            while writer.written < header.bytes:
                chunk = call(addr, "RAFT", "BACKUP", "CHUNK", token, str(writer.written),
                             timeout=CALL_TIMEOUT)
                if isinstance(chunk, ErrorReply):
                    raise BackupError(f"{addr}: {chunk.text}")
                if not isinstance(chunk, bytes) or not chunk:
                    raise BackupError(f"{addr} ended the stream early at {writer.written}")
                writer.write(chunk)
                bar.update(len(chunk))
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    finally:
        with contextlib.suppress(OSError, ConnectionError):  # else it expires on its own
            call(addr, "RAFT", "BACKUP", "END", token, timeout=5)
    return header
