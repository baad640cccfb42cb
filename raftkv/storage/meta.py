"""``meta.json``: which cluster and node a data directory belongs to, and its format.

Written last when a directory is created (atomically), so its presence means the
directory was fully initialised.
"""

from __future__ import annotations

import json
import os

import attrs

from raftkv.storage.data_files import read_bounded
from raftkv.storage.errors import CorruptionError, UnsupportedFormat
from raftkv.storage.files import atomic_write
from raftkv.storage.fsync import FsyncPolicy

META_NAME = "meta.json"
FORMAT_VERSION = 1
# write_meta's document is under 100 bytes; a bigger file is not ours (and deep nesting
# within it is a RecursionError, refused as unreadable too).
MAX_META_BYTES = 64 * 1024


@attrs.frozen
class DirMeta:
    cluster_id: str
    node_id: int
    format: int = FORMAT_VERSION


def write_meta(directory: str, meta: DirMeta, policy: FsyncPolicy) -> None:
    doc = {"format": meta.format, "cluster_id": meta.cluster_id, "node_id": meta.node_id}
    atomic_write(directory, META_NAME, (json.dumps(doc, indent=1) + "\n").encode(), policy)


def read_meta(directory: str) -> DirMeta | None:
    """The directory's meta, or None if it has none (never initialised)."""
    path = os.path.join(directory, META_NAME)
    try:
        raw = read_bounded(path, MAX_META_BYTES)
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        fmt = doc["format"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise CorruptionError(path, 0, f"unreadable meta file ({e})") from None
    if fmt != FORMAT_VERSION:
        raise UnsupportedFormat(
            f"{path}: data dir format {fmt!r}; this build reads {FORMAT_VERSION}"
        )
    cluster_id, node_id = doc.get("cluster_id"), doc.get("node_id")
    if not isinstance(cluster_id, str) or type(node_id) is not int:
        raise CorruptionError(path, 0, "meta file lacks a string cluster_id / integer node_id")
    return DirMeta(cluster_id=cluster_id, node_id=node_id, format=fmt)
