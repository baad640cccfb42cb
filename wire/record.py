"""Typed msgpack records: ``@record(tag=N)`` marks an ``@attrs.frozen`` class as a wire type.

A record encodes as a msgpack array ``[tag, field1, field2, ...]`` in declaration order;
nested records are encoded the same way. Decoding checks the tag, the field count and every
field's type against the class annotations and raises ``ProtocolError`` on any mismatch.

Supported field annotations: ``int`` (0 <= x < 2**64), ``bool``, ``bytes``, ``str``,
``float``, another record class, ``X | None`` and ``tuple[X, ...]`` of any of these.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

# tag -> class; filled by @record at import time.
REGISTRY: dict[int, type] = {}


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


def encode(obj: Any) -> bytes:  # pragma: no cover - replaced by the codec implementation
    raise NotImplementedError


def decode(data: bytes) -> Any:  # pragma: no cover - replaced by the codec implementation
    raise NotImplementedError
