"""Throughput of wire.frames and wire.record against plain msgpack + struct doing the same work.

Run: /work/venv/bin/python tests/bench/bench_frames.py   (about 10 s)

The reference side is the least a hand-written codec could do: struct length prefixes split
out of one whole buffer, and msgpack.packb/unpackb of plain lists with no validation. The
ratio (ours / reference, in items per second) shows what framing across reads, validation
and attrs records cost.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import attrs
import msgpack

from wire.frames import FrameDecoder, encode_frame
from wire.raft import AppendEntries, Entry
from wire.record import decode, encode

READ_SIZE = 64 * 1024  # what one socket read would typically return
HEADER = struct.Struct(">I")


def best_of(fn: Callable[[], int], runs: int = 3) -> float:
    """Seconds per item of the fastest of ``runs`` calls (fn returns the item count)."""
    best, count = float("inf"), 1
    for _ in range(runs):
        t0 = time.process_time()  # CPU time: steadier than wall time on a shared machine
        count = fn()
        best = min(best, time.process_time() - t0)
    return best / count


def reads(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


# --- frames ---------------------------------------------------------------------------------


def frames_ours(payloads: list[bytes], pieces: list[bytes]) -> int:
    """Encode every payload, then decode the same stream as it arrives in ``pieces``."""
    stream = b"".join([encode_frame(p) for p in payloads])
    dec = FrameDecoder()
    n = 0
    for piece in pieces:
        n += len(dec.feed(piece))
    assert n == len(payloads) and dec.buffered == 0 and len(stream) == sum(map(len, pieces))
    return n


def frames_reference(payloads: list[bytes], pieces: list[bytes]) -> int:
    """The same, splitting one whole buffer: no partial reads, no limits, no checks."""
    pack = HEADER.pack
    stream = b"".join([pack(len(p)) + p for p in payloads])
    out = []
    pos, end = 0, len(stream)
    while pos < end:
        (n,) = HEADER.unpack_from(stream, pos)
        out.append(stream[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert len(out) == len(payloads)
    return len(out)


# --- records --------------------------------------------------------------------------------


def append_entries(n_entries: int) -> AppendEntries:
    entries = tuple(Entry(7, 1000 + i, 0, bytes(100)) for i in range(n_entries))
    return AppendEntries(7, 1, 2, 999, 7, entries, 990)


def as_plain_list(msg: AppendEntries) -> list:
    fields = [getattr(msg, a.name) for a in attrs.fields(type(msg))]
    fields[5] = [[10, e.term, e.index, e.kind, e.data] for e in msg.entries]
    return [22, *fields]


def records_ours(msg: AppendEntries, count: int) -> tuple[Callable[[], int], Callable[[], int]]:
    data = encode(msg)
    assert decode(data, expect=AppendEntries) == msg

    def enc() -> int:
        for _ in range(count):
            encode(msg)
        return count

    def dec() -> int:
        for _ in range(count):
            decode(data, expect=AppendEntries)
        return count

    return enc, dec


def records_reference(msg: AppendEntries, count: int) -> tuple[Callable[[], int], ...]:
    plain = as_plain_list(msg)
    data = msgpack.packb(plain, use_bin_type=True)
    assert data == encode(msg)  # byte-for-byte the same wire format

    def enc() -> int:
        for _ in range(count):
            msgpack.packb(plain, use_bin_type=True)
        return count

    def dec() -> int:
        for _ in range(count):
            msgpack.unpackb(data, raw=False)
        return count

    return enc, dec


def decode_to_attrs_unchecked(msg: AppendEntries, count: int) -> Callable[[], int]:
    """unpackb, then build the same attrs objects with no validation at all."""
    data = encode(msg)

    def dec() -> int:
        for _ in range(count):
            v = msgpack.unpackb(data, raw=False, use_list=False)
            entries = tuple([Entry(*e[1:]) for e in v[6]])
            AppendEntries(*v[1:6], entries, *v[7:])
        return count

    return dec


def row(name: str, ours: float, ref: float, size: int, unit: str) -> None:
    def rate(sec: float) -> str:
        return f"{1 / sec:>11,.0f} {unit}/s {size / sec / 1e6:>8.1f} MB/s"

    print(f"{name:<34} ours {rate(ours)}   reference {rate(ref)}   ratio {ref / ours:5.2f}")


def main() -> None:
    print("frames: encode_frame + FrameDecoder.feed vs struct prefix + one-buffer split")
    for label, size, count, read_size in [
        ("100 B frames, 64 KiB reads", 100, 200_000, READ_SIZE),
        ("64 KiB frames, 64 KiB reads", 64 * 1024, 300, READ_SIZE),
        ("64 KiB frames, 1 KiB reads", 64 * 1024, 300, 1024),
    ]:
        payloads = [bytes([i % 251]) * size for i in range(count)]
        pieces = reads(b"".join(encode_frame(p) for p in payloads), read_size)
        ours = best_of(lambda p=payloads, r=pieces: frames_ours(p, r))
        ref = best_of(lambda p=payloads, r=pieces: frames_reference(p, r))
        row(label, ours, ref, size + 4, "frames")

    print("\nrecords: wire.record encode/decode vs msgpack.packb/unpackb of plain lists")
    for label, n_entries, count in [
        ("AppendEntries, 64 x 100 B entries", 64, 3_000),
        ("AppendEntries, heartbeat (0)", 0, 100_000),
    ]:
        msg = append_entries(n_entries)
        size = len(encode(msg))
        ours_enc, ours_dec = records_ours(msg, count)
        ref_enc, ref_dec = records_reference(msg, count)
        row(f"{label} encode", best_of(ours_enc), best_of(ref_enc), size, "msgs")
        ours_dec_rate = best_of(ours_dec)
        row(f"{label} decode", ours_dec_rate, best_of(ref_dec), size, "msgs")
        unchecked = best_of(decode_to_attrs_unchecked(msg, count))
        row("  ... vs unvalidated attrs build", ours_dec_rate, unchecked, size, "msgs")
    print("\nratio = ours / reference throughput (1.00 = as fast as the unvalidated reference)")


if __name__ == "__main__":
    main()
