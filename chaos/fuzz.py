"""Fuzz campaign against every pure decoder: each input must decode or raise its one
declared error, never anything else (``raftkv-chaos fuzz``).

Why: these decoders read what hostile peers, clients and disks hand a node. A decoder that
raises an undeclared exception (``IndexError``, ``TypeError``, ``RecursionError``...) escapes
the handler written for the declared one: a peer frame closes more than its connection, a
client command kills its connection task, a WAL record stops recovery with a traceback.

Targets and their declared errors:

======== ============================================================ ====================
target   decoder                                                      declared error
======== ============================================================ ====================
frames   ``wire.frames.FrameDecoder`` (random splits of the stream)   ProtocolError
peer     frames, then ``wire.record.decode`` of each, then            ProtocolError
         ``check_peer_message`` (what the transport does per frame)
resp     ``wire.resp.CommandParser`` (multibulk and inline, random    ProtocolError
         splits, drained after each feed as the client port does)
reply    ``wire.resp_reply.ReplyParser`` (the client library's side)  ProtocolError
entry    ``raftkv.kv.codec.decode_entry`` (a log entry's command)      KVDecodeError
snapshot ``raftkv.kv.state.decode_snapshot``                          KVDecodeError
wal      ``raftkv.storage.wal.scan_data`` (a whole segment) and       CorruptionError,
         ``raftkv.storage.records.decode`` (one checksummed payload)  UnsupportedFormat,
                                                                      ValueError (records)
======== ============================================================ ====================

Inputs: valid encodings built from random values (a corpus per target), then mutated:
bit flips, interesting bytes (msgpack type markers, 0x00/0xff, CR/LF), interesting integers
written over 1-8 bytes, insertions, deletions, duplications, truncation, splices of two
inputs; plus random bytes and random msgpack trees. Structure-aware where a checksum or a
length would stop everything at the first check: WAL payloads are mutated *under* a valid
frame checksum, and frames are re-framed around mutated records. Deterministic for a
seed: a finding names its target, seed and input number, and its input is saved.

The live section at the end (``hostile_traffic``) sends generated hostile inputs to a
running cluster's client and peer ports instead: the ``hostile`` nemesis of
``raftkv-chaos run`` (chaos.nemesis), whose run checks linearizability, that every node
stayed up and that the replicas are identical.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, get_type_hints

import attrs
import msgpack
import trio

from raftkv.kv.codec import MAX_STAMP, decode_entry, encode_entry
from raftkv.kv.errors import KVDecodeError
from raftkv.kv.machine import KVStateMachine
from raftkv.kv.state import KVState, decode_snapshot, encode_snapshot
from raftkv.raft.validation import check_peer_message
from raftkv.storage import records
from raftkv.storage.errors import CorruptionError, UnsupportedFormat
from raftkv.storage.wal import scan_data, segment_header
from wire.errors import ProtocolError
from wire.frames import FrameDecoder, encode_frame
from wire.hello import PROTOCOL_VERSION, Hello, Proof
from wire.raft import PEER_MESSAGE_TYPES, Entry, HardState
from wire.record import REGISTRY, decode, encode
from wire.resp import CommandParser
from wire.resp import encode_command as resp_command
from wire.resp_reply import NEED_MORE, ReplyParser

INTERESTING_BYTES = bytes([
    0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0D, 0x0A, 0x20, 0x2A, 0x24, 0x2B, 0x2D, 0x3A, 0x30,
    0x39, 0x5F, 0x2C, 0x23, 0x25, 0x7E, 0x3E, 0x28, 0x21, 0x3D,  # RESP3 type bytes
    0x90, 0x9F, 0x80, 0x8F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6,
    0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD3, 0xD4, 0xD8,
    0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0,  # msgpack markers
])
INTERESTING_INTS = [0, 1, -1, 2**7, 2**8 - 1, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1,
                    2**62 - 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]


@attrs.define
class Finding:
    target: str
    number: int
    error: str
    where: str
    data: bytes


@attrs.define
class TargetStats:
    inputs: int = 0
    decoded: int = 0
    refused: int = 0  # raised the declared error
    findings: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    slowest_input: bytes = b""  # to look at: a slow decode is a denial of service


# -- random values -----------------------------------------------------------------------------

def _rand_int(rng: random.Random) -> int:
    """An int in [0, 2**64): what the record codec can encode; edges often."""
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(INTERESTING_INTS) & (2**64 - 1)
    if roll < 0.8:
        return rng.randrange(0, 1000)
    return rng.randrange(0, 2**64)


def _rand_bytes(rng: random.Random, n: int = 24) -> bytes:
    return rng.randbytes(rng.randrange(0, n))


def _rand_str(rng: random.Random) -> str:
    return rng.choice(["", "a", "127.0.0.1:7000", "[::1]:1", "ü", "x" * rng.randrange(0, 40),
                       "\x00", "\ud7ff", "node-1"])


def random_value(tp: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value of annotation ``tp`` (ints, bytes, str, bool, tuples, records)."""
    origin = getattr(tp, "__origin__", None)
    if tp is int:
        return _rand_int(rng)
    if tp is bool:
        return rng.random() < 0.5
    if tp is bytes:
        return _rand_bytes(rng)
    if tp is str:
        return _rand_str(rng)
    if tp is float:
        return rng.random()
    if origin is tuple:
        inner = tp.__args__[0]
        return tuple(random_value(inner, rng, depth + 1)
                     for _ in range(rng.randrange(0, 4 if depth < 2 else 1)))
    if attrs.has(tp):
        return random_record(tp, rng, depth + 1)
    return None


def random_record(cls: type, rng: random.Random, depth: int = 0) -> Any:
    hints = get_type_hints(cls)
    values = {f.name: random_value(hints[f.name], rng, depth) for f in attrs.fields(cls)}
    return cls(**values)


def random_tree(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-able value."""
    roll = rng.randrange(9 if depth < 3 else 5)
    if roll == 0:
        return rng.choice([_rand_int(rng), -_rand_int(rng) // 2, rng.choice(INTERESTING_INTS)])
    if roll == 1:
        return _rand_bytes(rng)
    if roll == 2:
        return _rand_str(rng)
    if roll == 3:
        return rng.choice([None, True, False, 0.5, float("nan")])
    if roll == 4:
        return msgpack.ExtType(rng.randrange(0, 128), _rand_bytes(rng, 8))
    if roll in (5, 6, 7):
        return [random_tree(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {_rand_bytes(rng, 6): random_tree(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# -- mutation ------------------------------------------------------------------------------------

def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    """Apply 1-4 random mutations to ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(10)
        n = len(buf)
        at = rng.randrange(n + 1)
        if op == 0 and n:
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(INTERESTING_BYTES)
        elif op == 2 and n:
            width = rng.choice([1, 2, 4, 8])
            value = rng.choice(INTERESTING_INTS) & (2 ** (8 * width) - 1)
            buf[at : at + width] = value.to_bytes(width, rng.choice(["big", "little"]))
        elif op == 3:
            buf[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif op == 4 and n:
            del buf[at : at + rng.randrange(1, 9)]
        elif op == 5 and n:
            start = rng.randrange(n)
            piece = buf[start : start + rng.randrange(1, 17)]
            buf[at:at] = piece * rng.randrange(1, 4)
        elif op == 6 and n:
            del buf[rng.randrange(n) :]
        elif op == 7 and corpus:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buf[at:] = other[cut:]
        elif op == 8:
            buf[at:at] = bytes([rng.choice(INTERESTING_BYTES)]) * rng.randrange(1, 4)
        else:
            buf[at:at] = pack(random_tree(rng))
    return bytes(buf)


# -- targets -------------------------------------------------------------------------------------

@attrs.frozen
class Target:
    name: str
    run: Callable[[bytes, random.Random], Any]  # decodes; may use rng for splits
    declared: tuple[type[BaseException], ...]
    seed: Callable[[random.Random], bytes]  # one valid input
    structured: Callable[[random.Random, list[bytes]], bytes] | None = None


def _splits(data: bytes, rng: random.Random) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 3, 7, 64, len(data)])
        yield data[pos : pos + step]
        pos += step


PEER_TYPES = PEER_MESSAGE_TYPES
RECORD_TYPES = [REGISTRY[tag] for tag in sorted(REGISTRY)]


def _record_seed(rng: random.Random) -> bytes:
    cls = rng.choice(PEER_TYPES if rng.random() < 0.7 else RECORD_TYPES)
    return encode(random_record(cls, rng))


def _run_frames(data: bytes, rng: random.Random) -> None:
    decoder = FrameDecoder(max_frame_size=4096)
    for piece in _splits(data, rng):
        decoder.feed(piece)


def _frames_seed(rng: random.Random) -> bytes:
    return b"".join(encode_frame(_record_seed(rng)) for _ in range(rng.randrange(1, 4)))


def _run_peer(data: bytes, rng: random.Random) -> None:
    decoder = FrameDecoder(max_frame_size=1 << 16)
    for piece in _splits(data, rng):
        for frame in decoder.feed(piece):
            msg = decode(frame)
            if isinstance(msg, PEER_TYPES):
                check_peer_message(msg)


def _peer_structured(rng: random.Random, corpus: list[bytes]) -> bytes:
    """Frames around mutated records: the length prefix stays right, the record not."""
    record_bytes = _record_seed(rng)
    if rng.random() < 0.3:
        record_bytes = pack([rng.choice(list(REGISTRY)), *(random_tree(rng)
                                                          for _ in range(rng.randrange(0, 8)))])
    body = mutate(record_bytes, rng, corpus) if rng.random() < 0.8 else record_bytes
    return encode_frame(body or b"\xc0")


def _resp_seed(rng: random.Random) -> bytes:
    out = []
    for _ in range(rng.randrange(1, 4)):
        args = [rng.choice([b"SET", b"GET", b"PING", b"HELLO", b"EVAL"])]
        args += [_rand_bytes(rng, 12) for _ in range(rng.randrange(0, 4))]
        if rng.random() < 0.3:
            out.append(b" ".join(a.replace(b"\r", b"").replace(b"\n", b"") or b"''"
                                 for a in args) + b"\r\n")
        else:
            out.append(resp_command(*args))
    return b"".join(out)


def _run_resp(data: bytes, rng: random.Random) -> None:
    parser = CommandParser(max_inline_len=1024, max_bulk_len=4096, max_multibulk_len=64,
                           max_request_len=8192)
    for piece in _splits(data, rng):
        parser.feed(piece)
        for _command in parser:
            pass


_REPLY_SEEDS = [b"+OK\r\n", b"-ERR x\r\n", b":12\r\n", b"$3\r\nabc\r\n", b"$-1\r\n",
                b"*2\r\n$1\r\na\r\n:1\r\n", b"*-1\r\n", b"_\r\n", b",1.5\r\n", b"#t\r\n",
                b"(12345678901234567890\r\n", b"=7\r\ntxt:abc\r\n", b"%1\r\n+a\r\n:1\r\n",
                b"~2\r\n:1\r\n:2\r\n", b">2\r\n+m\r\n+x\r\n", b"|1\r\n+k\r\n+v\r\n+OK\r\n",
                b"!3\r\nerr\r\n"]


def _reply_seed(rng: random.Random) -> bytes:
    return b"".join(rng.choice(_REPLY_SEEDS) for _ in range(rng.randrange(1, 5)))


def _run_reply(data: bytes, rng: random.Random) -> None:
    parser = ReplyParser()
    for piece in _splits(data, rng):
        parser.feed(piece)
        while True:
            reply = parser.next_reply()
            if reply is NEED_MORE:
                break


def _entry_seed(rng: random.Random) -> bytes:
    args = [rng.choice([b"SET", b"DEL", b"EXPIRED"])] + [
        _rand_bytes(rng, 10) for _ in range(rng.randrange(0, 4))]
    stamp = rng.choice([None, 0, MAX_STAMP, rng.randrange(0, MAX_STAMP)])
    return encode_entry(args, stamp)


_T0 = 1_700_000_000_000  # a stamp, ms since the epoch


def _machine_snapshot(rng: random.Random) -> bytes:
    """A snapshot of a machine driven by a few commands: values, deadlines, versions,
    deletions and client sessions with recorded replies (snapshot version 3)."""
    kv = KVStateMachine()
    stamp = _T0 + rng.randrange(1000)
    sessions: list[int] = []
    for _ in range(rng.randrange(1, 12)):
        stamp += rng.randrange(50)
        key = b"k%d" % rng.randrange(6)
        roll = rng.randrange(6)
        if roll == 0:
            args = [b"session_open", b"%d" % rng.choice([1000, 60_000])]
        elif roll == 1 and sessions:
            args = [b"once", b"%d" % rng.choice(sessions), b"%d" % rng.randrange(1, 9),
                    rng.choice([b"incr", b"append", b"set"]), key, b"v"][: 6 if rng.random()
                                                                          < 0.5 else 5]
        elif roll == 2:
            args = [b"pexpire", key, b"%d" % rng.randrange(1, 500)]
        elif roll == 3:
            args = [b"del", key]
        else:
            args = [b"set", key, _rand_bytes(rng, 10)]
        reply = kv.apply(encode_entry(args, stamp))
        if args[0] == b"session_open" and type(reply) is int:
            sessions.append(reply)
    return kv.snapshot()


def _snapshot_seed(rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        return _machine_snapshot(rng)
    keys = [_rand_bytes(rng, 8) for _ in range(rng.randrange(0, 6))]
    data = {k: _rand_bytes(rng, 8) for k in keys}
    live = list(data)
    expires = {k: rng.randrange(0, 2**40) for k in live if rng.random() < 0.5}
    mods = {k: rng.randrange(0, 2**20) for k in live if rng.random() < 0.5}
    if rng.random() < 0.2:
        return encode_snapshot(data)
    state = KVState(data, expires, mods, rng.randrange(0, 2**40), rng.randrange(0, 99),
                    rng.randrange(0, 99), {b"s" * 40: b"return 1"} if rng.random() < 0.3 else {},
                    {_rand_bytes(rng, 6): rng.randrange(0, 99)} if rng.random() < 0.3 else {})
    return encode_snapshot(state)


def _snapshot_structured(rng: random.Random, corpus: list[bytes]) -> bytes:
    """A snapshot array with one element replaced by a random tree."""
    obj = msgpack.unpackb(_snapshot_seed(rng), raw=False, strict_map_key=False)
    if isinstance(obj, list) and obj:
        obj[rng.randrange(len(obj))] = random_tree(rng)
    return pack(obj)


def _wal_payload(rng: random.Random) -> bytes:
    roll = rng.randrange(4)
    if roll == 0:
        first = rng.randrange(1, 50)
        entries = [Entry(rng.randrange(0, 9), first + i, rng.randrange(0, 3), _rand_bytes(rng))
                   for i in range(rng.randrange(1, 4))]
        return records.entries_record(entries)[records.FRAME.size :]
    if roll == 1:
        return records.hard_state_record(
            HardState(rng.randrange(9), rng.randrange(9), rng.randrange(50)))[records.FRAME.size :]
    if roll == 2:
        return records.truncate_record(rng.randrange(50))[records.FRAME.size :]
    return records.reset_record(rng.randrange(50), rng.randrange(9))[records.FRAME.size :]


def _wal_seed(rng: random.Random) -> bytes:
    return segment_header(1) + b"".join(records.frame(_wal_payload(rng))
                                        for _ in range(rng.randrange(0, 5)))


def _wal_structured(rng: random.Random, corpus: list[bytes]) -> bytes:
    """Mutated payloads under valid checksums, so the record decoder sees them."""
    frames = []
    for _ in range(rng.randrange(1, 5)):
        payload = _wal_payload(rng)
        roll = rng.random()
        if roll < 0.5:
            payload = mutate(payload, rng, [])
        elif roll < 0.7:
            payload = pack([rng.randrange(0, 6), *(random_tree(rng)
                                                   for _ in range(rng.randrange(0, 4)))])
        frames.append(records.frame(payload))
    return segment_header(1) + b"".join(frames)


def _run_wal(data: bytes, rng: random.Random) -> None:
    scan_data(data, "fuzz.log", 1, rng.random() < 0.5)
    if len(data) > 20:  # the payload decoder alone, on the same bytes past the header
        with contextlib.suppress(ValueError):
            records.decode(data[20 + records.FRAME.size :])


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("frames", _run_frames, (ProtocolError,), _frames_seed),
    Target("peer", _run_peer, (ProtocolError,), _frames_seed, _peer_structured),
    Target("resp", _run_resp, (ProtocolError,), _resp_seed),
    Target("reply", _run_reply, (ProtocolError,), _reply_seed),
    Target("entry", lambda data, rng: decode_entry(data), (KVDecodeError,), _entry_seed),
    Target("snapshot", lambda data, rng: decode_snapshot(data), (KVDecodeError,),
           _snapshot_seed, _snapshot_structured),
    Target("wal", _run_wal, (CorruptionError, UnsupportedFormat), _wal_seed, _wal_structured),
]}


def generate(target: Target, rng: random.Random, corpus: list[bytes]) -> bytes:
    """One input: valid, mutated, structure-aware mutated, or random."""
    roll = rng.random()
    if roll < 0.1:
        return target.seed(rng)
    if roll < 0.15:
        return rng.randbytes(rng.randrange(0, 64))
    if roll < 0.2:
        return pack(random_tree(rng))
    if target.structured is not None and roll < 0.5:
        data = target.structured(rng, corpus)
        return mutate(data, rng, corpus) if rng.random() < 0.3 else data
    return mutate(rng.choice(corpus), rng, corpus)


def fuzz_target(target: Target, count: int, seed: int,
                on_finding: Callable[[Finding], None] | None = None,
                ) -> tuple[TargetStats, list[Finding]]:
    """Feed ``count`` inputs to ``target``; findings are inputs that raised anything but
    the declared error (one kept per distinct exception type and place)."""
    rng = random.Random(f"{seed}:{target.name}")
    corpus = [target.seed(rng) for _ in range(256)]
    stats = TargetStats()
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    started = time.perf_counter()
    for number in range(count):
        data = generate(target, rng, corpus)
        split_rng = random.Random(number)
        t0 = time.perf_counter()
        try:
            target.run(data, split_rng)
            stats.decoded += 1
        except target.declared:
            stats.refused += 1
        except Exception as exc:  # the point: anything else is a finding
            stats.findings += 1
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
            key = (type(exc).__name__, where)
            if key not in seen:
                seen.add(key)
                finding = Finding(target.name, number, f"{type(exc).__name__}: {exc}"[:300],
                                  where, data)
                findings.append(finding)
                if on_finding is not None:
                    on_finding(finding)
        took = time.perf_counter() - t0
        if took > stats.slowest:
            stats.slowest, stats.slowest_input = took, data
        stats.inputs += 1
        if number % 64 == 0 and len(data) < 4096:
            corpus[rng.randrange(len(corpus))] = data  # keep some mutants as parents
    stats.seconds = time.perf_counter() - started
    return stats, findings



def campaign(names: list[str], count: int, seed: int, out_dir: str | None,
             echo: Callable[[str], None]) -> int:
    """Run ``count`` inputs through each named target, print a table; the number of
    findings (each input saved under ``out_dir``, if given) is the result."""
    total_findings = 0
    total_inputs = 0
    started = time.perf_counter()

    def save(finding: Finding) -> None:
        echo(f"FINDING {finding.target} #{finding.number} at {finding.where}: {finding.error}")
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            path = os.path.join(out_dir, f"{finding.target}-{seed}-{finding.number}.bin")
            with open(path, "wb") as f:
                f.write(finding.data)

    echo(f"{'target':<9} {'inputs':>9} {'decoded':>9} {'refused':>9} {'findings':>8} "
         f"{'seconds':>8} {'slowest ms':>10}")
    for name in names:
        stats, _ = fuzz_target(TARGETS[name], count, seed, save)
        total_findings += stats.findings
        total_inputs += stats.inputs
        echo(f"{name:<9} {stats.inputs:>9} {stats.decoded:>9} {stats.refused:>9} "
             f"{stats.findings:>8} {stats.seconds:>8.1f} {stats.slowest * 1000:>10.2f}"
             f"  (slowest input: {len(stats.slowest_input)} bytes)")
    echo(f"{total_inputs} inputs in {time.perf_counter() - started:.1f} s, seed {seed}: "
         f"{total_findings} findings")
    return total_findings


# -- live: hostile traffic at a running cluster's ports (the ``hostile`` nemesis) ----------------
#
# What a hostile client or an unauthenticated stranger on the network sends: garbage, huge
# declared lengths, commands with hostile arguments, peer frames without a Hello, bad Hellos,
# a member's identity without its secret. Writes only ever name keys under HOSTILE_KEY and
# admin commands only carry ids or addresses every node refuses, so the workload's keys and
# the membership are untouched unless a node gets something wrong (which the run's checks
# then catch). Claiming a member's id in a Hello is sent only to a cluster whose peers
# authenticate (``authenticated``): on an unauthenticated loopback cluster anyone may speak
# for a member, by design (README "Security").

HOSTILE_KEY = b"hostile:"
_HOSTILE_ARGS = [b"", b"0", b"-1", b"1", b"9", b"-0", b"1_0", b"0x10", b" 1", b"1 ", b"+1",
                 b"nan", b"inf", b"-inf", b"1e400", b"3.14", b"18446744073709551616",
                 b"9223372036854775807", b"-9223372036854775808", b"4294967296",
                 b"*", b"*?*?*?*?", b"[", b"[^", b"\\", b"[a-\\", b"*[]]*", b"\x00", b"\r\n",
                 b"\xff\xfe", "\u200b\u00e9".encode(), b"EX", b"PX", b"NX", b"GET", b"KEEPTTL"]
_BAD_IDS = [b"0", b"-9", b"1_0", b"", b"x", str(2**63).encode(), str(2**64).encode()]
_BAD_ADDRS = [b"a..b:7000", b"127.0.0.1:99999", b"127.0.0.1:0", "\u200b:7000".encode(),
              b"", b":", b"[::1", b"127.0.0.1", b"x" * 300 + b":1"]
# K: a hostile key, A: a hostile argument, I: an id every node refuses, D: a bad address.
_TEMPLATES = [t.split() for t in (
    "SET K A", "SET K A EX A", "SET K A PX A NX", "SET K A GET KEEPTTL", "GET K", "APPEND K A",
    "SETRANGE K A A", "GETRANGE K A A", "INCRBY K A", "INCRBYFLOAT K A", "DECRBY K A",
    "EXPIRE K A", "PEXPIREAT K A", "TTL K", "MSET K A K A", "MGET K K K", "DEL K", "EXISTS K K",
    "KEYS A", "SCAN A MATCH A COUNT A", "SCAN A", "STRLEN K", "GETSET K A", "SETNX K A",
    "MSETNX K A K", "GETDEL K", "GETEX K EX A", "HELLO A", "HELLO 3 AUTH A A", "AUTH A",
    "CLIENT SETNAME A", "CLIENT SETINFO LIB-NAME A", "ECHO A", "PING A", "OBJECT ENCODING K",
    "COMMAND GETKEYS A A", "COMMAND INFO A", "INFO A", "DBSIZE", "RANDOMKEY", "MULTI", "EXEC",
    "DISCARD", "WATCH K", "EVAL A 0", "CONFIG GET A", "RAFT ONCE A A SET K A",
    "RAFT ADDNODE A D", "RAFT ADDNODE A D LEARNER", "RAFT ADDNODE I D", "RAFT REMOVENODE I",
    "RAFT PROMOTE I", "RAFT TRANSFER I", "RAFT BACKUP CHUNK A A", "A", "A A A")]
_READ_ONLY = [b"GET", b"EXISTS", b"TTL", b"STRLEN", b"PING", b"ECHO"]
_HUGE_HEADERS = [b"*99999999999\r\n", b"*1048577\r\n", b"*-5\r\n", b"*1\r\n$99999999999\r\n",
                 b"*3\r\n$3\r\nSET\r\n$10\r\nhostile:hk\r\n$99999999999\r\n",
                 b"*2\r\n$3\r\nGET\r\n$4294967296\r\n", b"*2\r\n$3\r\nGET\r\n$-2\r\n",
                 b"*1\r\n$9000000\r\n"]


def _hostile_arg(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.7:
        return rng.choice(_HOSTILE_ARGS)
    if r < 0.9:
        return _rand_bytes(rng, rng.randrange(1, 64))
    return rng.choice([b"x", b"*", b"\x00"]) * rng.choice([1024, 65536, 300_000])


def hostile_command(rng: random.Random) -> list[bytes]:
    """One command from _TEMPLATES with hostile arguments (keys under HOSTILE_KEY)."""
    out = []
    for word in rng.choice(_TEMPLATES):
        if word == "K":
            out.append(HOSTILE_KEY + _rand_bytes(rng, 8))
        elif word == "A":
            out.append(_hostile_arg(rng))
        elif word == "I":
            out.append(rng.choice(_BAD_IDS))
        elif word == "D":
            out.append(rng.choice(_BAD_ADDRS))
        else:
            out.append(word.encode())
    return out


def hostile_client_input(rng: random.Random) -> bytes:
    """Bytes for the client port: commands, inline lines, garbage, huge declared lengths."""
    r = rng.random()
    if r < 0.45:
        return b"".join(resp_command(*hostile_command(rng)) for _ in range(rng.randrange(1, 6)))
    if r < 0.55:
        return b" ".join(a.replace(b"\n", b"") for a in hostile_command(rng)) + b"\r\n"
    if r < 0.65:
        return rng.randbytes(rng.randrange(1, 4096))
    if r < 0.8:
        return rng.choice(_HUGE_HEADERS) + rng.randbytes(rng.randrange(0, 2048))
    if r < 0.85:
        return b"x" * rng.choice([70_000, 200_000])  # an inline line with no end
    seed = resp_command(rng.choice(_READ_ONLY), HOSTILE_KEY + _rand_bytes(rng, 4))
    return mutate(seed, rng, [])


def hostile_peer_input(rng: random.Random, cluster_id: str, members: list[int], dst: int,
                       authenticated: bool) -> bytes:
    """Bytes for ``dst``'s peer port: frames without a Hello, bad Hellos, and (only when
    the cluster's peers authenticate) a member's Hello with no valid proof, then frames."""
    r = rng.random()
    if r < 0.25:  # no Hello at all
        return b"".join(_peer_structured(rng, []) for _ in range(rng.randrange(1, 4)))
    if r < 0.3:
        return rng.randbytes(rng.randrange(1, 4096))
    if r < 0.35:  # a frame header far past any limit, then some of its "payload"
        return rng.choice([2**24 + 1, 2**31, 2**32 - 1]).to_bytes(4, "big") + rng.randbytes(512)
    others = [m for m in members if m != dst]
    version, cid, node = PROTOCOL_VERSION, cluster_id, rng.choice([99, 2**63 - 1, dst, 0])
    r = rng.random()
    if r < 0.2:
        version = rng.choice([0, 1, 2, 99, 2**64 - 1])
    elif r < 0.4:
        cid = rng.choice(["", "other", "x" * 10_000, cluster_id + "\x00"])
    elif authenticated and others:
        node = rng.choice(others)  # a member's identity, without the secret
    nonce = rng.choice([b"", rng.randbytes(32), rng.randbytes(1000)])
    hello = Hello(version, cid, node, "127.0.0.1:1", "127.0.0.1:2", nonce)
    out = [encode_frame(encode(hello))]
    if rng.random() < 0.5:
        out.append(encode_frame(encode(Proof(rng.randbytes(rng.choice([0, 32, 64]))))))
    out += [_peer_structured(rng, []) if rng.random() < 0.5
            else encode_frame(encode(random_record(rng.choice(PEER_TYPES), rng)))
            for _ in range(rng.randrange(0, 4))]
    return b"".join(out)


@attrs.define
class LiveStats:
    """What the hostile traffic did (reported with the fault)."""

    client_inputs: int = 0
    peer_inputs: int = 0
    connections: int = 0
    refused: int = 0  # connects that failed (a node down, full, or paused)

    def summary(self) -> str:
        return (f"{self.client_inputs} client and {self.peer_inputs} peer inputs on "
                f"{self.connections} connections ({self.refused} connects failed)")


@attrs.frozen
class LiveTarget:
    node: int
    client: tuple[str, int]
    peer: tuple[str, int]


async def hostile_traffic(targets: list[LiveTarget], cluster_id: str, authenticated: bool,
                          rng: random.Random, stats: LiveStats, workers: int = 4) -> None:
    """Throw hostile inputs at every target's two ports until cancelled: ``workers``
    connections at a time, each sending 1-3 inputs, reading what comes back for a moment
    (so replies are not just queued) and closing."""
    members = [t.node for t in targets]

    async def worker(wrng: random.Random) -> None:
        while True:
            target = wrng.choice(targets)
            peer = wrng.random() < 0.4
            host, port = target.peer if peer else target.client
            try:
                with trio.fail_after(2):
                    stream = await trio.open_tcp_stream(host, port)
            except (OSError, trio.TooSlowError):
                stats.refused += 1
                await trio.sleep(0.05)  # a node down or paused: try another soon
                continue
            stats.connections += 1
            async with stream:
                with trio.move_on_after(3), contextlib.suppress(
                        trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    for _ in range(wrng.randrange(1, 4)):
                        if peer:
                            data = hostile_peer_input(wrng, cluster_id, members, target.node,
                                                      authenticated)
                            stats.peer_inputs += 1
                        else:
                            data = hostile_client_input(wrng)
                            stats.client_inputs += 1
                        await stream.send_all(data)
                    with trio.move_on_after(0.2):
                        while await stream.receive_some(65536):
                            pass

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker, random.Random(rng.random()))
