"""A crafted WAL record cannot make recovery build more than its bytes justify (issue 12).

Found by attack round 5: a 32 MiB segment holding one checksum-valid entries record of 32M
empty msgpack arrays took ~64 bytes of memory per input byte while a generic msgpack decode
built 32M lists, and was refused only after 8 s under a 1 GiB limit (by the MemoryError).
``records.decode`` now reads a record against its schema, checking each container header
before anything is built, so such a record is refused at once, naming file and offset.

Each case runs in a subprocess under ``RLIMIT_AS`` (the old decoder would otherwise take
gigabytes of the shared machine) and reports the error and its peak RSS growth.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import msgpack
import pytest

from raftkv.storage import records, wal
from wire.raft import Entry, HardState

MIB = 1024 * 1024
N = 4 * MIB  # elements in the hostile container: 4 MiB of one-byte arrays


def _array_header(n: int) -> bytes:
    return b"\xdd" + struct.pack(">I", n)  # array 32


def _segment(path: Path, payload: bytes) -> None:
    frame = records.FRAME.pack(len(payload), zlib.crc32(payload)) + payload  # checksum valid
    path.write_bytes(wal.segment_header(1) + frame)


HOSTILE = {
    # The attack as found: [ENTRIES, 1, [[], [], ... 4M times]].
    "empty-arrays-as-entries": b"\x93" + msgpack.packb(records.ENTRIES) + msgpack.packb(1)
    + _array_header(N)
    + b"\x90" * N,
    # A plausible count of entries, but the first entry's term is a 4M-element array.
    "array-as-term": b"\x93" + msgpack.packb(records.ENTRIES) + msgpack.packb(1)
    + _array_header(1) + b"\x93" + _array_header(N) + b"\x90" * N + b"\x00\xc4\x00",
    # A hard state whose term is a 4M-element array.
    "array-in-hard-state": b"\x94" + msgpack.packb(records.HARD_STATE) + _array_header(N)
    + b"\x90" * N + b"\x00\x00",
}

CHILD = r"""
import json, resource, sys
from raftkv.storage import wal
from raftkv.storage.errors import CorruptionError
resource.setrlimit(resource.RLIMIT_AS, (768 * 1024 * 1024, 768 * 1024 * 1024))
data = wal.read_bounded(sys.argv[1], wal.MAX_SEGMENT_FILE)  # the file itself, held anyway
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    wal.scan_data(data, sys.argv[1], 1, True)
    out = {"error": None}
except CorruptionError as e:
    out = {"error": str(e), "offset": e.offset}
out["grew_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps(out))
"""


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_record_is_refused_without_materialising(tmp_path: Path, case: str) -> None:
    path = tmp_path / wal.segment_name(1)
    payload = HOSTILE[case]
    _segment(path, payload)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["error"] is not None, "a hostile record was accepted"
    assert out["offset"] == wal.HEADER.size  # the record's own offset, in the file named
    assert str(path) in out["error"]
    assert "MemoryError" not in out["error"] and "memory" not in out["error"].lower(), out
    # Refused from the bytes as they are: at most the unpacker's one copy of the payload.
    assert out["grew_kib"] * 1024 < 2 * len(payload), out


def test_valid_records_still_decode() -> None:
    entries = [Entry(3, i, records.NORMAL, b"v" * i) for i in range(1, 50)]
    rec = records.decode(records.entries_record(entries)[records.FRAME.size:])
    assert isinstance(rec, records.EntriesRec)
    assert rec.first == 1 and rec.items == [[3, records.NORMAL, b"v" * i] for i in range(1, 50)]
    hs = records.decode(records.hard_state_record(HardState(4, 2, 9))[records.FRAME.size:])
    assert hs == records.HardStateRec(HardState(4, 2, 9))


@pytest.mark.parametrize("payload", [
    msgpack.packb([records.ENTRIES, 1, [[1, 0, b""]]]) + b"\x00",  # trailing bytes
    msgpack.packb([records.ENTRIES, 1, [[1, 0, b"x"]]])[:-1],  # cut short
    msgpack.packb([records.ENTRIES, 1, [[1, 0, [b"x"]]]]),  # data is not bytes
    msgpack.packb([records.ENTRIES, 1, [[1, 0]]]),  # two fields
    msgpack.packb([records.ENTRIES, 1, [{1: 2}]]),  # a map
    msgpack.packb([records.HARD_STATE, 1, 2, {1: 2}]),
    msgpack.packb([records.TRUNCATE, "x"]),
    msgpack.packb([records.ENTRIES, 1]) + b"",
    b"\xc1",
])
def test_malformed_records_raise_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        records.decode(payload)
