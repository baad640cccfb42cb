"""Typed msgpack records: ``@record(tag=N)`` marks an ``@attrs.frozen`` class as a wire type.

A record encodes as a msgpack array ``[tag, field1, field2, ...]`` in attrs field order;
nested records are encoded the same way (with their own tag). Every field is always
encoded, defaults included: fixed arity keeps the format simple and strict. Decoding checks
the tag, the field count and every field's type against the class annotations and raises
``ProtocolError`` on any mismatch, so a bad peer frame can only ever cost its connection.

Supported field annotations: ``int`` (0 <= x < 2**64; ``bool`` is not an int here),
``bool``, ``bytes``, ``str``, ``float``, another record class, ``X | None`` and
``tuple[X, ...]`` of any of these.

This runs for every Raft message, so each class gets a compiled plan on first use: a pair
of generated functions with the checks for its fields inlined (the approach attrs itself
takes for ``__init__``), rather than a generic walk over the annotations per value.
"""

from __future__ import annotations

import contextvars
import io
import types
import typing
from collections.abc import Callable
from itertools import repeat
from typing import Any, TypeVar

import attrs
import msgpack

from wire.errors import ProtocolError
from wire.frames import encode_frame, frame_header

T = TypeVar("T")

# tag -> class; filled by @record at import time.
REGISTRY: dict[int, type] = {}

MAX_INT = 2**64 - 1

# A converter maps one field value to its msgpack form (encode) or back (decode), raising
# on a mismatch; ``label`` is the field's path, used only to build error messages.
Converter = Callable[[Any, str], Any]

_ENCODERS: dict[type, Converter] = {}
_DECODERS: dict[type, Converter] = {}
# The classes this thread is compiling (to refuse a recursive record). Per thread, not
# global: records are encoded on a node's loop and in its worker threads (large peer
# messages), and a class compiled by two threads at once made the second fail as
# "recursive" (a new leader's first InstallSnapshot was dropped). Two threads compiling
# one class both finish; each stores the same converters.
_COMPILING: contextvars.ContextVar[frozenset[type]] = contextvars.ContextVar(
    "wire_record_compiling", default=frozenset())

_packer = msgpack.Packer(use_bin_type=True)
_unpackb = msgpack.unpackb


def record(tag: int):
    """Register an attrs frozen class under a unique wire ``tag``."""

    def wrap(cls: type[T]) -> type[T]:
        if not hasattr(cls, "__attrs_attrs__"):
            raise TypeError(f"{cls.__name__} must be an attrs class (apply @attrs.frozen first)")
        if tag in REGISTRY and REGISTRY[tag] is not cls:
            raise ValueError(f"wire tag {tag} used by {REGISTRY[tag].__name__} and {cls.__name__}")
        REGISTRY[tag] = cls
        cls.__wire_tag__ = tag  # type: ignore[attr-defined]
        return cls

    return wrap


def encode(obj: Any) -> bytes:
    """Encode a registered record to msgpack bytes.

    A non-record or a field holding the wrong type raises ``TypeError``; an int out of range
    or an unencodable string raises ``ValueError``. Both are bugs in the sender, caught here
    so that a peer never has to reject our frame (hence not ``ProtocolError``).
    """
    enc = _ENCODERS.get(type(obj)) or _encoder(type(obj))
    try:
        return _packer.pack(enc(obj))
    except UnicodeEncodeError as e:
        raise ValueError(f"{type(obj).__name__}: unencodable string: {e}") from None


def encoder(cls: type) -> Converter:
    """``cls``'s generated encoder: ``converter(obj, label)`` is ``obj``'s msgpack-ready
    form (lists), checked as ``encode`` checks it (wire.append packs entries with it)."""
    return _ENCODERS.get(cls) or _encoder(cls)


def encode_frame_record(obj: Any) -> bytes:
    """A complete frame (length prefix included) holding ``encode(obj)``."""
    return encode_frame(encode(obj))


# A bytes field at least this large is passed by reference by ``encode_pieces``.
BIG_BYTES = 64 * 1024


def encode_pieces(obj: Any, big: int = BIG_BYTES) -> list[bytes]:
    """``encode(obj)`` in pieces whose concatenation is exactly ``encode(obj)``: every bytes
    value of at least ``big`` bytes is a piece of its own, the caller's very object (never
    copied); the msgpack around it (headers, small fields, the bin header) is packed into
    the small pieces between them.

    Why (issue 12, big values under CPU starvation): ``encode`` copies an 8 MiB entry into
    msgpack's buffer, then into bytes, and the frame and the batch copied it twice more,
    10.6 ms of GIL per follower per 8 MiB write on the leader. In pieces, the entry costs
    no copy at all before the socket's own, and every follower's frame shares it.

    Raises as ``encode`` does."""
    enc = _ENCODERS.get(type(obj)) or _encoder(type(obj))
    out: list[bytes] = []
    small = bytearray()
    try:
        _pack_pieces(enc(obj), big, out, small)
    except UnicodeEncodeError as e:
        raise ValueError(f"{type(obj).__name__}: unencodable string: {e}") from None
    if small:
        out.append(bytes(small))
    return out


def encode_frame_pieces(obj: Any, max_frame_size: int, big: int = BIG_BYTES) -> list[bytes]:
    """A complete frame holding ``encode(obj)``, in pieces (``encode_pieces``): the length
    prefix is joined to the first piece when that one is small.

    Raises ``ValueError`` (as ``encode_frame``) when the payload exceeds ``max_frame_size``,
    and as ``encode`` does."""
    return frame_pieces(encode_pieces(obj, big), max_frame_size, big)


def frame_pieces(pieces: list[bytes], max_frame_size: int, big: int = BIG_BYTES) -> list[bytes]:
    """``pieces`` (``encode_pieces``'s, modified in place) with the frame's length prefix in
    front: joined to the first piece when that one is small, else a piece of its own."""
    header = frame_header(sum(map(len, pieces)), max_frame_size)
    if len(pieces[0]) < big:
        pieces[0] = header + pieces[0]
    else:
        pieces.insert(0, header)
    return pieces


def _has_big(value: Any, big: int) -> bool:
    if type(value) is bytes:
        return len(value) >= big
    return type(value) is list and any(_has_big(v, big) for v in value)


def _pack_pieces(value: Any, big: int, out: list[bytes], small: bytearray) -> None:
    """Pack ``value`` (an encoder's output: lists of msgpack-ready values) onto ``small``,
    except each big bytes value: ``small`` is then closed into a piece, and the value is one.
    msgpack's encoding is context-free, so packing part by part gives the same bytes."""
    if type(value) is bytes and len(value) >= big:
        small += bin_header(len(value))
        out.append(bytes(small))
        small.clear()
        out.append(value)
    elif type(value) is list and _has_big(value, big):
        small += _packer.pack_array_header(len(value))
        for item in value:
            _pack_pieces(item, big, out, small)
    else:
        small += _packer.pack(value)


def bin_header(n: int) -> bytes:
    """msgpack's bin header for ``n`` bytes, exactly as ``Packer.pack`` writes it (so a big
    value can follow it by reference: here and in the WAL's entries records)."""
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def decode(
    data: bytes | bytearray | memoryview, expect: type | tuple[type, ...] | None = None
) -> Any:
    """Decode one record from ``data`` (exactly one msgpack value, no trailing bytes).

    ``expect`` (a class or a tuple of classes) rejects any other top-level record. Raises
    ``ProtocolError`` on anything that is not a valid record, and nothing else.

    Input of ``STREAM_MIN`` bytes or more is decoded in a stream against the schema
    (``_stream_decode``), smaller input as one msgpack value then checked (faster).
    """
    n = len(data)
    if n >= STREAM_MIN:
        try:
            return _stream_decode(data, expect)
        except _StreamUnsupported:
            pass  # this msgpack does not stop where _Input.big expects: decode it whole
    try:
        value = _unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            # Never let a declared length exceed what the input could hold.
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n // 2,
            max_ext_len=n,
        )
    except msgpack.ExtraData as e:
        raise ProtocolError(f"trailing bytes after the record ({len(e.extra)} extra)") from None
    except Exception as e:  # msgpack documents that unpacking may raise any exception
        raise ProtocolError(f"invalid msgpack: {e}") from None
    if type(value) is not tuple or not value:
        raise ProtocolError(f"expected a record (a non-empty array), got {_describe(value)}")
    tag = value[0]
    cls = REGISTRY.get(tag) if type(tag) is int else None
    if cls is None:
        raise ProtocolError(f"unknown record tag {_describe(tag)}")
    if expect is not None and not issubclass(cls, expect):
        raise ProtocolError(f"expected {_names(expect)}, got {cls.__name__}")
    dec = _DECODERS.get(cls) or _decoder(cls)
    return dec(value, cls.__name__)


def _construct(cls: type, args: list[str], ns: dict[str, Any], rejected: str) -> list[str]:
    """A generated decoder's last lines: build ``cls`` from its checked fields ``args``,
    through ``cls(...)`` (its validators run; ``rejected`` is the line raising when they
    refuse) or, when ``__init__`` only stores, by the stores themselves (a third cheaper)."""
    setters = _slot_setters(cls)
    if setters is None:
        return ["    try:", f"        return cls({', '.join(args)})",
                "    except Exception as e:", rejected]
    ns["new"] = object.__new__
    lines = ["    o = new(cls)"]
    for i, a in enumerate(args):
        ns[f"set_{a}"] = setters[i]
        lines.append(f"    set_{a}(o, {a})")
    return [*lines, "    return o"]


def compile_all() -> None:
    """Build the plan of every registered record now (raises TypeError on a bad annotation).

    Plans are otherwise built on first use; tests call this to surface unsupported
    annotations early rather than on the first message of that type.
    """
    for cls in list(REGISTRY.values()):
        _decoder(cls)


# --- errors ---------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if type(value) is int:
        return f"int {value}"
    return type(value).__name__


def _names(expect: type | tuple[type, ...]) -> str:
    classes = expect if isinstance(expect, tuple) else (expect,)
    return " or ".join(c.__name__ for c in classes)


def _bad_decode(label: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(f"{label}: expected {expected}, got {_describe(value)}")


def _bad_encode(label: str, expected: str, value: Any) -> Exception:
    kind = ValueError if type(value) is int and expected.startswith("int") else TypeError
    return kind(f"{label}: expected {expected}, got {_describe(value)}")


def _bad_shape(label: str, cls: type, value: Any) -> ProtocolError:
    tag, arity = cls.__wire_tag__, len(attrs.fields(cls))  # type: ignore[attr-defined]
    if type(value) is not tuple:
        return _bad_decode(label, f"{cls.__name__} record (an array)", value)
    if len(value) != arity + 1:
        return ProtocolError(
            f"{label}: {cls.__name__} has tag + {arity} fields, got an array of {len(value)}"
        )
    return ProtocolError(f"{label}: expected tag {tag} ({cls.__name__}), got {_describe(value[0])}")


def _bad_fields(label: str, cls: type, error: Exception) -> ProtocolError:
    return ProtocolError(f"{label}: {cls.__name__} rejected its fields: {error!r}")


def _as_int(value: Any, label: str) -> int:
    """Accept int subclasses such as IntEnum when encoding (never bool)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise _bad_encode(label, _INT, value)


# --- annotation specs -----------------------------------------------------------------------

_INT = "int in [0, 2**64)"
_PRIMS: dict[type, str] = {int: _INT, bool: "bool", bytes: "bytes", str: "str", float: "float"}
_UNIONS = (typing.Union, types.UnionType)


@attrs.frozen
class _Spec:
    """A parsed field annotation: kind is 'prim', 'record', 'optional' or 'tuple'."""

    kind: str
    type: type | None = None
    inner: _Spec | None = None

    def describe(self) -> str:
        if self.kind == "prim":
            return _PRIMS[self.type]  # type: ignore[index]
        if self.kind == "record":
            return f"{self.type.__name__} record"  # type: ignore[union-attr]
        if self.kind == "optional":
            return f"{self.inner.describe()} or nil"  # type: ignore[union-attr]
        return f"tuple of {self.inner.describe()}"  # type: ignore[union-attr]


def _parse(tp: Any, where: str) -> _Spec:
    if tp in _PRIMS:
        return _Spec("prim", tp)
    if isinstance(tp, type) and tp.__dict__.get("__wire_tag__") is not None:
        if REGISTRY.get(tp.__wire_tag__) is not tp:
            raise TypeError(f"{where}: {tp.__name__} is not a registered record")
        return _Spec("record", tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _UNIONS and len(args) == 2 and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return _Spec("optional", inner=_parse(inner, where))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _Spec("tuple", inner=_parse(args[0], where))
    raise TypeError(f"{where}: unsupported wire annotation {tp!r}")


# --- converters for nested values (records, optionals, tuples) ------------------------------


def _prim_converter(tp: type, decoding: bool) -> Converter:
    expected = _PRIMS[tp]
    bad = _bad_decode if decoding else _bad_encode
    if tp is int:

        def check_int(v: Any, label: str) -> int:
            if type(v) is not int:
                if decoding:
                    raise bad(label, expected, v)
                v = _as_int(v, label)
            if v < 0 or v > MAX_INT:
                raise bad(label, expected, v)
            return v

        return check_int

    def check(v: Any, label: str) -> Any:
        if type(v) is not tp:
            raise bad(label, expected, v)
        return v

    return check


def _converter(spec: _Spec, decoding: bool) -> Converter:
    if spec.kind == "prim":
        return _prim_converter(spec.type, decoding)  # type: ignore[arg-type]
    if spec.kind == "record":
        return _decoder(spec.type) if decoding else _encoder(spec.type)  # type: ignore[arg-type]
    inner = _converter(spec.inner, decoding)  # type: ignore[arg-type]
    if spec.kind == "optional":

        def optional(v: Any, label: str) -> Any:
            return None if v is None else inner(v, label)

        return optional
    bad = _bad_decode if decoding else _bad_encode
    expected = spec.describe()
    # msgpack arrays come back as tuples (use_list=False); going out, lists are cheapest.
    build = tuple if decoding else list

    def sequence(v: Any, label: str) -> Any:
        if type(v) is not tuple:
            raise bad(label, expected, v)
        try:
            return build(map(inner, v, repeat(label)))
        except (ProtocolError, TypeError, ValueError):
            # Rare path: redo the work item by item to name the offending index.
            for i, item in enumerate(v):
                inner(item, f"{label}[{i}]")
            raise

    return sequence


# --- code generation ------------------------------------------------------------------------

_BAD_PRIM = {
    int: "type({v}) is not int or {v} < 0 or {v} > MAX_INT",
    bool: "type({v}) is not bool",
    bytes: "type({v}) is not bytes",
    str: "type({v}) is not str",
    float: "type({v}) is not float",
}


def _plan(cls: type) -> tuple[str, list[tuple[str, _Spec]]]:
    tag = cls.__dict__.get("__wire_tag__")
    if tag is None or REGISTRY.get(tag) is not cls:
        raise TypeError(f"{cls.__name__} is not a registered wire record")
    hints = typing.get_type_hints(cls)
    fields = []
    for a in attrs.fields(cls):
        if not a.init or a.kw_only:
            raise TypeError(f"{cls.__name__}.{a.name}: wire fields must be positional init args")
        fields.append((a.name, _parse(hints[a.name], f"{cls.__name__}.{a.name}")))
    return cls.__name__, fields


def _compile(cls: type) -> None:
    """Generate and cache ``cls``'s encoder and decoder."""
    compiling = _COMPILING.get()
    if cls in compiling:
        raise TypeError(f"{cls.__name__}: recursive record types are not supported")
    token = _COMPILING.set(compiling | {cls})
    try:
        name, fields = _plan(cls)
        tag = cls.__wire_tag__  # type: ignore[attr-defined]
        ns: dict[str, Any] = {
            "cls": cls,
            "MAX_INT": MAX_INT,
            "ProtocolError": ProtocolError,
            "bad_decode": _bad_decode,
            "bad_encode": _bad_encode,
            "bad_shape": _bad_shape,
            "bad_fields": _bad_fields,
            "as_int": _as_int,
            "describe": _describe,
        }
        for tp in _PRIMS:
            ns[tp.__name__] = tp
        enc = [f"def encode(o, label={name!r}):"]
        enc.append("    if type(o) is not cls:")
        enc.append(f"        raise TypeError(f'{{label}}: expected {name}, got {{describe(o)}}')")
        dec = [f"def decode(v, label={name!r}):"]
        shape = f"len(v) != {len(fields) + 1} or type(v[0]) is not int or v[0] != {tag}"
        dec.append(f"    if type(v) is not tuple or {shape}:")
        dec.append("        raise bad_shape(label, cls, v)")
        args = [f"a{i}" for i in range(len(fields))]
        if args:
            dec.append(f"    _, {', '.join(args)}, = v")
        for i, (field, spec) in enumerate(fields):
            a, where = args[i], f"label + '.{field}'"
            enc.append(f"    {a} = o.{field}")
            prim = spec.type if spec.kind == "prim" else None
            if spec.kind == "optional" and spec.inner.kind == "prim":  # type: ignore[union-attr]
                prim = spec.inner.type  # type: ignore[union-attr]
            if prim is not None:
                exp = repr(spec.describe())
                guard = f"{a} is not None and " if spec.kind == "optional" else ""
                dec.append(f"    if {guard}({_BAD_PRIM[prim].format(v=a)}):")
                dec.append(f"        raise bad_decode({where}, {exp}, {a})")
                indent = "    "
                if spec.kind == "optional":
                    enc.append(f"    if {a} is not None:")
                    indent = "        "
                if prim is int:
                    enc.append(f"{indent}if type({a}) is not int:")
                    enc.append(f"{indent}    {a} = as_int({a}, {where})")
                enc.append(f"{indent}if {_BAD_PRIM[prim].format(v=a)}:")
                enc.append(f"{indent}    raise bad_encode({where}, {exp}, {a})")
            else:
                ns[f"dec_{a}"] = _converter(spec, decoding=True)
                ns[f"enc_{a}"] = _converter(spec, decoding=False)
                dec.append(f"    {a} = dec_{a}({a}, {where})")
                enc.append(f"    {a} = enc_{a}({a}, {where})")
        enc.append(f"    return [{', '.join([str(tag), *args])}]")
        dec += _construct(cls, args, ns, "        raise bad_fields(label, cls, e) from e")
        source = "\n".join(enc) + "\n\n" + "\n".join(dec) + "\n"
        exec(compile(source, f"<wire.record plan for {cls.__qualname__}>", "exec"), ns)
        _ENCODERS[cls] = ns["encode"]
        _DECODERS[cls] = ns["decode"]
    finally:
        _COMPILING.reset(token)


def _slot_setters(cls: type) -> list[Callable[[Any, Any], None]] | None:
    """The slot stores attrs' ``__init__`` would do, when that is all it would do.

    None (so decoding calls ``cls(...)``) if the class has validators, converters, init
    hooks, a ``__dict__`` or slots beyond its fields (e.g. attrs' cached hash).
    """
    fields = attrs.fields(cls)
    if any(a.validator is not None or a.converter is not None for a in fields):
        return None
    if hasattr(cls, "__attrs_pre_init__") or hasattr(cls, "__attrs_post_init__"):
        return None
    slots: set[str] = set()
    for klass in cls.__mro__[:-1]:
        if "__slots__" not in klass.__dict__:
            return None
        declared = klass.__dict__["__slots__"]
        slots.update([declared] if isinstance(declared, str) else declared)
    if slots - {"__weakref__"} != {a.name for a in fields}:
        return None
    descriptors = [getattr(cls, a.name) for a in fields]
    if not all(type(d) is types.MemberDescriptorType for d in descriptors):
        return None
    return [d.__set__ for d in descriptors]


def _encoder(cls: type) -> Converter:
    if cls not in _ENCODERS:
        _compile(cls)
    return _ENCODERS[cls]


def _decoder(cls: type) -> Converter:
    if cls not in _DECODERS:
        _compile(cls)
    return _DECODERS[cls]


# --- streaming decode (large input) -----------------------------------------------------------

# Input at least this large is decoded in a stream (only an authenticated peer may send a
# frame over 64 KiB; below, the generic decode is the faster one).
STREAM_MIN = 64 * 1024


def _stream_decode(data: bytes | bytearray | memoryview, expect: Any) -> Any:
    """``decode`` in a stream against the schema, as the WAL's decoder reads its records
    (raftkv/storage/records.py): every container header is checked against the record's
    field before its items are read, scalars may not be containers, and only the record's
    own objects are built. Decoding 16 MiB of one-byte entries as one generic value peaked
    at 16.6 bytes of memory per input byte, the tuples of the generic value beside the
    records built from them (9.1 per byte); a malformed frame of nested arrays could cost
    more before any check refused it. A big value is copied once, from the input
    (``_Input.big``)."""
    n = len(data)
    # BytesIO shares a bytes object's buffer (it would copy anything else, once per reopen).
    d = data if isinstance(data, bytes) else bytes(data)
    try:
        head = msgpack.Unpacker(raw=False, max_buffer_size=16, max_array_len=0,
                                max_map_len=0, max_str_len=16, max_bin_len=16, max_ext_len=16)
        head.feed(d[:16])  # the array header (5 bytes at most) and the tag (9)
        size = head.read_array_header()
        if size == 0:
            raise ProtocolError("expected a record (a non-empty array), got tuple")
        try:
            tag = head.unpack()
        except Exception:  # a container, or a long string: not a tag either way
            raise ProtocolError("unknown record tag (not an int)") from None
        cls = REGISTRY.get(tag) if type(tag) is int else None
        if cls is None:
            raise ProtocolError(f"unknown record tag {_describe(tag)}")
        if expect is not None and not issubclass(cls, expect):
            raise ProtocolError(f"expected {_names(expect)}, got {cls.__name__}")
        s = _Input(d)
        try:
            value = _streamer(cls)(s, d)
        except ProtocolError as e:
            raise ProtocolError(f"{cls.__name__}{e}") from e.__cause__
        if s.tell() != n:
            raise ProtocolError(f"trailing bytes after the record ({n - s.tell()} extra)")
    except (ProtocolError, _StreamUnsupported):
        raise
    except Exception as e:  # msgpack raises several unrelated types (OutOfData among them)
        raise ProtocolError(f"invalid msgpack: {e!r}") from None
    return value


class _StreamUnsupported(Exception):
    """The Unpacker did not stop at a big value's body as ``_Input.big`` relies on (msgpack
    1.2 does): the frame is then decoded whole, correct at twice a big value's memory,
    rather than refused, so a msgpack release that changes this cannot stop replication."""


# The stream decoder reads the input in pieces of READ_SIZE; a value larger than
# BUFFER_SIZE (so only a 32-bit bin or str: a 16-bit one is at most 65,538 bytes) fills the
# Unpacker's buffer and is copied by ``_Input.big`` from the input instead.
READ_SIZE = 64 * 1024
BUFFER_SIZE = 2 * READ_SIZE

_BIN32, _STR32 = 0xC6, 0xDB


class _Input:
    """A stream decode's input and the Unpacker reading it from ``base``.

    Why not one Unpacker for the whole input (issue 12): it holds a value whole in its
    buffer before copying it out, so a frame of one 8 MiB entry peaked at twice its size.
    Here the buffer is bounded (``BUFFER_SIZE``): a value that overflows it is copied
    straight from the input, once, and a new Unpacker goes on after it. The generated
    decoders read ``u`` again after anything that may have done so."""

    __slots__ = ("base", "d", "n", "u")

    def __init__(self, d: bytes) -> None:
        self.d, self.n = d, len(d)
        self._open(0)

    def _open(self, at: int) -> None:
        src = io.BytesIO(self.d)
        src.seek(at)
        self.base = at
        self.u = msgpack.Unpacker(
            src, read_size=READ_SIZE, raw=False, use_list=False, strict_map_key=True,
            max_buffer_size=BUFFER_SIZE, max_array_len=0, max_map_len=0, max_ext_len=0,
            max_str_len=self.n, max_bin_len=self.n,
        )

    def tell(self) -> int:
        """The input offset of the next value."""
        return self.base + self.u.tell()

    def big(self, label: str, want: type) -> bytes | str:
        """The value the Unpacker raised BufferFull on, copied from the input; refused
        uncopied when it is not of type ``want`` (bytes or str).

        msgpack's Unpacker stops at the value's body once it has read the header (its
        parser suspends at the start of a value's data), so the 5-byte bin 32 or str 32
        header lies just before ``tell()``; anything else is never guessed at: the frame is
        decoded whole instead (``_StreamUnsupported``)."""
        d, at = self.d, self.tell()
        kind = d[at - 5] if at >= 5 else None
        size = int.from_bytes(d[at - 4:at], "big")
        end = at + size
        if kind not in (_BIN32, _STR32) or size <= BUFFER_SIZE - READ_SIZE:
            raise _StreamUnsupported(f"{label}: a value overflowed the decode buffer at {at}")
        if end > self.n:
            raise ProtocolError(f"{label}: {size} bytes claimed in {self.n - at}")
        got = bytes if kind == _BIN32 else str
        if got is not want:
            raise ProtocolError(f"{label}: expected {_PRIMS[want]}, got {got.__name__}")
        if kind == _BIN32:
            value: bytes | str = d[at:end]
        else:
            value = _utf8(memoryview(d)[at:end])
            if value is None:
                raise ProtocolError(f"{label}: a str that is not UTF-8 at {at}")
        self._open(end)
        return value


def _utf8(data: memoryview) -> str | None:
    """``data`` decoded, or None: the UnicodeDecodeError (it holds a copy of ``data``) is
    dropped here rather than kept as the context of the refusal."""
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        return None


_STREAMERS: dict[type, Callable[[Any, Any], Any]] = {}


def _streamer(cls: type) -> Callable[[Any, Any], Any]:
    """``cls``'s stream decoder: reads one record from an ``_Input`` (whose Unpacker reads
    the whole input, so a short one raises OutOfData), checks and builds it. Generated, as
    ``_compile`` does the others: the streaming decode of 1.4M one-byte entries took 4.1 s of CPU
    interpreted against 2.9 s for the generic decode. A ProtocolError's text starts with
    the path below the record (".entries[3].data: ..."), built on the way out."""
    fn = _STREAMERS.get(cls)
    if fn is not None:
        return fn
    name, fields = _plan(cls)
    tag = cls.__wire_tag__  # type: ignore[attr-defined]
    ns: dict[str, Any] = {"cls": cls, "MAX_INT": MAX_INT, "ProtocolError": ProtocolError,
                          "BufferFull": msgpack.BufferFull, "describe": _describe}
    for tp in _PRIMS:
        ns[tp.__name__] = tp
    src = ["def sdecode(s, d):",
           "    u = s.u",
           "    h = u.read_array_header()",  # ValueError: not an array (caller's message)
           "    t = u.unpack()",
           f"    if h != {len(fields) + 1} or type(t) is not int or t != {tag}:",
           f"        raise ProtocolError(': expected {name} record (tag {tag}, "
           f"{len(fields)} fields)')",
           "    unpack = u.unpack"]
    args = [f"a{i}" for i in range(len(fields))]
    for a, (field, spec) in zip(args, fields, strict=True):
        inner = spec.inner if spec.kind == "optional" else spec
        if inner.kind == "prim":  # type: ignore[union-attr]
            exp = inner.describe()  # type: ignore[union-attr]
            guard = f"{a} is not None and " if spec.kind == "optional" else ""
            src += ["    try:",
                    f"        {a} = unpack()"]
            if inner.type in (bytes, str):  # type: ignore[union-attr]
                src += ["    except BufferFull:  # a big value: copied from the input",
                        f"        {a} = s.big('.{field}', {inner.type.__name__})",  # type: ignore[union-attr]
                        "        unpack = s.u.unpack"]
            src += ["    except ValueError as e:  # a container where a scalar belongs",
                    f"        raise ProtocolError(f'.{field}: expected {exp} ({{e}})') from None",
                    f"    if {guard}({_BAD_PRIM[inner.type].format(v=a)}):",  # type: ignore[union-attr]
                    f"        raise ProtocolError(f'.{field}: expected {exp}, got '"
                    f" + describe({a}))"]
        else:
            ns[f"s_{a}"] = _stream_converter(spec)
            src += ["    try:",
                    f"        {a} = s_{a}(s, d)",
                    "    except ProtocolError as e:",
                    f"        raise ProtocolError('.{field}' + str(e)) from e.__cause__",
                    "    unpack = s.u.unpack"]  # it may have read a big value
    rejected = f"        raise ProtocolError(f': {name} rejected its fields: {{e!r}}') from e"
    src += _construct(cls, args, ns, rejected)
    exec(compile("\n".join(src) + "\n", f"<wire.record stream plan for {name}>", "exec"), ns)
    fn = _STREAMERS[cls] = ns["sdecode"]
    return fn


def _stream_converter(spec: _Spec) -> Callable[[Any, Any], Any]:
    """The stream decoder of a field that is not a plain scalar (record, tuple, optional)."""
    if spec.kind == "prim":
        exp = spec.describe()
        check = _prim_converter(spec.type, True)  # type: ignore[arg-type]
        want = spec.type

        def prim(s: _Input, d: bytes) -> Any:
            try:
                return check(s.u.unpack(), "")
            except msgpack.BufferFull:  # a big value: copied from the input
                if want is not bytes and want is not str:
                    raise ProtocolError(f": expected {exp}, got a big value") from None
                return s.big("", want)
            except ValueError as e:
                raise ProtocolError(f": expected {exp} ({e})") from None

        return prim
    if spec.kind == "record":
        cls = spec.type
        record = _streamer(cls)  # type: ignore[arg-type]

        def nested(s: _Input, d: bytes) -> Any:
            try:
                return record(s, d)
            except ValueError:
                raise ProtocolError(f": expected {cls.__name__} record (an array)") from None

        return nested
    inner = _stream_converter(spec.inner)  # type: ignore[arg-type]
    if spec.kind == "optional":

        def optional(s: _Input, d: bytes) -> Any:
            at = s.tell()
            if at < len(d) and d[at] == 0xC0:  # msgpack's nil
                s.u.skip()
                return None
            return inner(s, d)

        return optional
    expected = spec.describe()

    def sequence(s: _Input, d: bytes) -> Any:
        try:
            count = s.u.read_array_header()
        except ValueError:
            raise ProtocolError(f": expected {expected}") from None
        left = len(d) - s.tell()
        if count > left:  # every item takes a byte at least
            raise ProtocolError(f": {count} items claimed in {left} bytes")
        items: list[Any] = []
        append = items.append
        try:
            for _ in range(count):
                append(inner(s, d))
        except ProtocolError as e:
            raise ProtocolError(f"[{len(items)}]{e}") from e.__cause__
        return tuple(items)

    return sequence
