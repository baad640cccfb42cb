"""wire.frames: the length prefix, the incremental decoder, and its defences."""

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire import ProtocolError
from wire.frames import MAX_FRAME_SIZE, FrameDecoder, encode_frame


def header(n: int) -> bytes:
    return struct.pack(">I", n)


def model_parse(stream: bytes, max_size: int) -> tuple[list[bytes], bool]:
    """The obvious whole-stream parse: (complete payloads before any error, error seen)."""
    frames, pos = [], 0
    while len(stream) - pos >= 4:
        n = int.from_bytes(stream[pos : pos + 4], "big")
        if n == 0 or n > max_size:
            return frames, True
        if len(stream) - pos - 4 < n:
            break
        frames.append(stream[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return frames, False


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- encode_frame ---------------------------------------------------------------------------


def test_encode_frame_prefixes_big_endian_length() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"x" * 258) == b"\x00\x00\x01\x02" + b"x" * 258


def test_encode_frame_rejects_empty_payload() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_frame(b"")


def test_encode_frame_rejects_oversized_payload() -> None:
    assert encode_frame(b"abcd", max_frame_size=4) == header(4) + b"abcd"
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(b"abcde", max_frame_size=4)


def test_encode_frame_default_limit_is_16_mib() -> None:
    assert MAX_FRAME_SIZE == 16 * 1024 * 1024
    with pytest.raises(ValueError):
        encode_frame(bytes(MAX_FRAME_SIZE + 1))


# --- FrameDecoder: normal operation --------------------------------------------------------


def test_decoder_returns_every_complete_frame_of_one_feed() -> None:
    dec = FrameDecoder()
    assert dec.feed(encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"3")) == [
        b"one",
        b"two",
        b"3",
    ]
    assert dec.buffered == 0


def test_decoder_buffers_partial_header_and_partial_body() -> None:
    dec = FrameDecoder()
    stream = encode_frame(b"hello") + encode_frame(b"world")
    assert dec.feed(stream[:2]) == []
    assert dec.buffered == 2
    assert dec.feed(stream[2:6]) == []
    assert dec.buffered == 6
    assert dec.feed(stream[6:12]) == [b"hello"]
    assert dec.buffered == 3
    assert dec.feed(stream[12:]) == [b"world"]
    assert dec.buffered == 0


def test_decoder_accepts_bytearray_and_memoryview() -> None:
    dec = FrameDecoder()
    frames = dec.feed(bytearray(encode_frame(b"ab"))) + dec.feed(memoryview(encode_frame(b"cd")))
    assert frames == [b"ab", b"cd"]
    assert all(type(f) is bytes for f in frames)


def test_decoder_payloads_do_not_alias_caller_or_internal_buffers() -> None:
    dec = FrameDecoder()
    data = bytearray(encode_frame(b"abc"))
    dec.feed(data[:5])
    (frame,) = dec.feed(data[5:])
    data[:] = b"\x00" * len(data)
    dec.feed(encode_frame(b"zzz"))
    assert frame == b"abc"


def test_decoder_accepts_a_frame_of_exactly_max_size() -> None:
    dec = FrameDecoder(max_frame_size=8)
    assert dec.feed(header(8) + b"12345678") == [b"12345678"]


def test_decoder_large_frame_in_small_chunks() -> None:
    payload = bytes(range(256)) * 256
    dec = FrameDecoder()
    stream = encode_frame(payload) + encode_frame(b"tail")
    out: list[bytes] = []
    for i in range(0, len(stream), 1000):
        out += dec.feed(stream[i : i + 1000])
        assert dec.buffered <= len(payload) + 4
    assert out == [payload, b"tail"]
    assert dec.buffered == 0


def test_decoder_rejects_invalid_max_frame_size() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=0)
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=2**32)


# --- FrameDecoder: errors ------------------------------------------------------------------


def test_zero_length_frame_is_a_protocol_error() -> None:
    dec = FrameDecoder()
    with pytest.raises(ProtocolError, match="zero-length"):
        dec.feed(header(0))


def test_oversized_header_fails_before_the_body_arrives() -> None:
    dec = FrameDecoder(max_frame_size=100)
    assert dec.feed(header(101)[:3]) == []
    with pytest.raises(ProtocolError, match="exceeds max_frame_size 100"):
        dec.feed(header(101)[3:])
    assert dec.buffered == 0


def test_huge_declared_length_fails_on_the_header_alone() -> None:
    dec = FrameDecoder()
    with pytest.raises(ProtocolError):
        dec.feed(b"\xff\xff\xff\xff")


def test_bad_header_after_good_frames_in_same_feed_fails() -> None:
    dec = FrameDecoder(max_frame_size=10)
    with pytest.raises(ProtocolError):
        dec.feed(encode_frame(b"ok") + header(11) + b"x" * 11)


def test_bad_header_behind_a_buffered_tail_fails() -> None:
    dec = FrameDecoder(max_frame_size=10)
    assert dec.feed(encode_frame(b"ok") + b"\x00\x00") == [b"ok"]
    with pytest.raises(ProtocolError, match="zero-length"):
        dec.feed(b"\x00\x00")


def test_decoder_is_dead_after_an_error() -> None:
    dec = FrameDecoder()
    with pytest.raises(ProtocolError):
        dec.feed(header(0))
    with pytest.raises(ProtocolError, match="already failed: zero-length"):
        dec.feed(encode_frame(b"valid"))
    with pytest.raises(ProtocolError):
        dec.feed(b"")
    assert dec.buffered == 0


# --- properties -----------------------------------------------------------------------------

payload_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=20)


@given(payloads=payload_lists, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_yields_the_same_payloads(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    dec = FrameDecoder()
    out = [frame for chunk in chunked(stream, cuts) for frame in dec.feed(chunk)]
    assert out == payloads
    assert dec.buffered == 0


@given(payloads=payload_lists)
def test_byte_by_byte_yields_the_same_payloads(payloads: list[bytes]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    dec = FrameDecoder()
    out = [frame for i in range(len(stream)) for frame in dec.feed(stream[i : i + 1])]
    assert out == payloads
    assert dec.buffered == 0


# Garbage mixed with well-formed frames, so that runs get past the first header too.
noisy_streams = st.lists(
    st.one_of(st.binary(max_size=12), st.binary(min_size=1, max_size=40).map(encode_frame)),
    max_size=12,
).map(b"".join)


@given(
    stream=noisy_streams,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    max_size=st.integers(min_value=1, max_value=64),
)
def test_random_bytes_give_payloads_or_protocol_error(
    stream: bytes, cuts: list[int], max_size: int
) -> None:
    expected, model_fails = model_parse(stream, max_size)
    dec = FrameDecoder(max_frame_size=max_size)
    out: list[bytes] = []
    failed = False
    for chunk in chunked(stream, cuts):
        try:
            out += dec.feed(chunk)
        except ProtocolError:
            failed = True
            break
        assert dec.buffered <= max_size + 4
    assert failed == model_fails
    if failed:
        # Frames completed in the failing feed are dropped with it: a prefix arrived.
        assert out == expected[: len(out)]
    else:
        assert out == expected
