"""Throughput of wire.resp: command parsing (multibulk and inline), reply encoding, and
hiredis parsing the same multibulk stream as the reference; and the whole pure per-command
path of a SET in the client port and node (parse, command lookup, legacy form, validate,
log-entry encoding, apply, reply encoding: everything but sockets, trio and Raft), so the
port's CPU cost per command can be set against the hiredis parse in one run.

Run: /work/venv/bin/python tests/bench/bench_resp.py   (takes well under 20 s)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from raftkv.kv import KVStateMachine, encode_entry, legacy_form, lookup, validate
from raftkv.server.commands import is_write
from wire.reply import OK
from wire.resp import CommandParser, encode_command, encode_reply
from wire.resp_reply import NEED_MORE, ReplyParser

N = 100_000
CHUNK = 16 * 1024


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def best_of(fn: Callable[[], int], runs: int = 3) -> float:
    """Items per second of the fastest of `runs` calls (fn returns the item count)."""
    best = float("inf")
    count = 0
    for _ in range(runs):
        t0 = time.process_time()
        count = fn()
        best = min(best, time.process_time() - t0)
    return count / best


def parse_ours(pieces: list[bytes]) -> int:
    parser = CommandParser()
    count = 0
    for piece in pieces:
        parser.feed(piece)
        while parser.next_command() is not None:
            count += 1
    assert parser.buffered == 0
    return count


def parse_hiredis(pieces: list[bytes]) -> int:
    import hiredis

    reader = hiredis.Reader()
    count = 0
    for piece in pieces:
        reader.feed(piece)
        while reader.gets() is not False:
            count += 1
    return count


def parse_replies(pieces: list[bytes]) -> int:
    parser = ReplyParser()
    count = 0
    for piece in pieces:
        parser.feed(piece)
        while parser.next_reply() is not NEED_MORE:
            count += 1
    return count


def command_path(pieces: list[bytes]) -> int:
    """Every pure step a SET takes from the socket's bytes to the reply's bytes."""
    parser = CommandParser()
    kv = KVStateMachine()
    count = 0
    for piece in pieces:
        parser.feed(piece)
        while (args := parser.next_command()) is not None:
            is_write(args)
            args = legacy_form(args)
            if validate(args) is None and lookup(args[0]) is not None:
                encode_reply(kv.apply(encode_entry(args)), 2)
            count += 1
    return count


def encode_many(value: object, proto: int = 2) -> Callable[[], int]:
    def run() -> int:
        for _ in range(N):
            encode_reply(value, proto)
        return N

    return run


def main() -> None:
    t_start = time.process_time()
    multibulk = b"".join(encode_command("SET", f"key:{i}", "value") for i in range(N))
    inline = b"".join(b"SET key:%d value\r\n" % i for i in range(N))
    quoted = b"".join(b'SET "key:%d" \'a value\'\r\n' % i for i in range(N))
    mb_pieces, in_pieces, q_pieces = chunks(multibulk), chunks(inline), chunks(quoted)
    assert parse_ours(mb_pieces) == parse_ours(in_pieces) == parse_hiredis(mb_pieces) == N

    assert command_path(mb_pieces) == N
    ours = best_of(lambda: parse_ours(mb_pieces))
    path = best_of(lambda: command_path(mb_pieces))
    ref = best_of(lambda: parse_hiredis(mb_pieces))
    rows = [
        ("parse multibulk SET (16 KiB chunks)", ours),
        ("  hiredis.Reader, same bytes", ref),
        ("whole pure SET path (parse..reply)", path),
        ("parse inline SET", best_of(lambda: parse_ours(in_pieces))),
        ("parse inline SET with quotes", best_of(lambda: parse_ours(q_pieces))),
        ("ReplyParser, same multibulk bytes", best_of(lambda: parse_replies(mb_pieces))),
        ("encode +OK", best_of(encode_many(OK))),
        ("encode bulk (5 bytes)", best_of(encode_many(b"value"))),
        ("encode null (RESP2)", best_of(encode_many(None))),
        ("encode integer 42", best_of(encode_many(42))),
        ("encode 3-element array (RESP3)", best_of(encode_many([b"a", 1, None], 3))),
    ]
    print(f"{N} items per run, best of 3 runs, CPU time")
    for name, rate in rows:
        print(f"{name:40s} {rate / 1000:9.0f} k/s")
    print(f"ratio ours/hiredis (multibulk parse)     {ours / ref:9.2f}")
    print(f"per SET: hiredis parse {1e6 / ref:.2f} us, our parse {1e6 / ours:.2f} us, "
          f"whole pure path {1e6 / path:.2f} us")
    print(f"total time {time.process_time() - t_start:.1f} s")


if __name__ == "__main__":
    main()
