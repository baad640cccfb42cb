"""A backup file around any payload, for the attack tests of backups and restore."""

from __future__ import annotations

import hashlib
from pathlib import Path

from raftkv.backup_file import BackupHeader, BackupWriter


def write_backup(path: Path, payload: bytes, **fields: object) -> str:
    """A well-formed backup of ``payload`` (its header's digest matches it); ``fields``
    override the header's (index 5, term 2, one key by default)."""
    header = dict(cluster_id="old", index=5, term=2, keys=1, bytes=len(payload),
                  sha256=hashlib.sha256(payload).hexdigest(), created="now", source="test")
    header.update(fields)
    writer = BackupWriter(str(path), BackupHeader(**header))  # type: ignore[arg-type]
    writer.write(payload)
    writer.finish()
    return str(path)
