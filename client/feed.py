"""The change feed's wire shapes (issue 18): stream ids, feed keys, and XREAD/XRANGE replies
turned into ``Change`` records, every reply checked before it is believed.

Pure (no trio, no sockets), so the watch loop (client.watch), the command line and the
chaos checker share one reading of the protocol:

- the feed is the virtual stream ``__raftkv:changes``, ``__raftkv:changes:<glob>`` for the
  keys matching a Redis glob;
- ids are ``<index>-<position>``: the log index of the write and its place inside the
  entry (MSET, transactions, scripts change several keys in one entry), so they mean the
  same on every node and order the changes totally;
- an entry's fields are ``op`` (the command, lower case), ``key``, and optionally ``value``
  and ``deadline`` (ms since the epoch), as a flat field/value list like any stream entry.
"""

from __future__ import annotations

from typing import Any

import attrs

FEED = b"__raftkv:changes"
MAX_ID = (1 << 64) - 1  # Redis stream id parts are unsigned 64-bit


class BadFeedReply(ValueError):
    """A reply that is not a well-formed feed reply (the node is broken or not RaftKV)."""


@attrs.frozen(order=True)
class ChangeId:
    """``<index>-<position>``; ordered like the log."""

    index: int
    position: int

    @classmethod
    def parse(cls, text: str | bytes) -> ChangeId:
        """``"12-3"`` -> ``ChangeId(12, 3)``; ``"12"`` means ``12-0`` (as Redis reads an id
        without its sequence part in XREAD); ValueError for anything else."""
        raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        index, dash, position = raw.partition("-")
        if not _digits(index) or (dash and not _digits(position)):
            raise ValueError(f"not a change id (INDEX-POSITION): {raw!r}")
        parsed = cls(int(index), int(position) if dash else 0)
        if parsed.index > MAX_ID or parsed.position > MAX_ID:
            raise ValueError(f"change id out of range: {raw!r}")
        return parsed

    def __str__(self) -> str:
        return f"{self.index}-{self.position}"


ZERO = ChangeId(0, 0)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20


def parse_start(start: str) -> ChangeId | None:
    """A watch's ``start``: ``"$"`` (only changes from now on: None, resolved against the
    cluster), ``"0"`` (everything retained), or an id to resume after."""
    if start == "$":
        return None
    return ChangeId.parse(start)


def feed_key(pattern: str | bytes = "*") -> bytes:
    """The stream key of the feed restricted to ``pattern`` (``*``: the whole feed)."""
    raw = pattern.encode() if isinstance(pattern, str) else pattern
    if not raw:
        raise ValueError("empty key pattern (use * for every key)")
    return FEED if raw == b"*" else FEED + b":" + raw


@attrs.frozen
class Change:
    """One change: ``op`` (``set``, ``del``, ``incrby``, ...) applied to ``key`` at
    ``index``/``position`` of the log; ``value`` when the write set one, ``deadline``
    (ms since the epoch) when the key expires."""

    id: ChangeId
    op: str
    key: bytes
    value: bytes | None = None
    deadline: int | None = None

    @property
    def index(self) -> int:
        return self.id.index

    @property
    def position(self) -> int:
        return self.id.position

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (bytes as UTF-8, undecodable bytes kept as surrogate escapes)."""
        def text(b: bytes | None) -> str | None:
            return None if b is None else b.decode("utf-8", "surrogateescape")

        return {"id": str(self.id), "index": self.index, "position": self.position,
                "op": self.op, "key": text(self.key), "value": text(self.value),
                "deadline": self.deadline}


def parse_entry(raw: Any) -> Change:
    """One stream entry ``[id, [field, value, ...]]`` -> ``Change``; BadFeedReply if
    malformed (missing ``op``/``key``, odd field list, a deadline that is not a number)."""
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], bytes):
        raise BadFeedReply(f"not a stream entry: {_short(raw)}")
    try:
        cid = ChangeId.parse(raw[0])
    except ValueError as exc:
        raise BadFeedReply(str(exc)) from None
    flat = raw[1]
    if not isinstance(flat, list) or len(flat) % 2 or not all(
            isinstance(x, bytes) for x in flat):
        raise BadFeedReply(f"entry {cid}: fields are not a field/value list")
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    op, key = fields.get(b"op"), fields.get(b"key")
    if op is None or key is None:
        raise BadFeedReply(f"entry {cid}: no op or key field")
    deadline = fields.get(b"deadline")
    if deadline is not None:
        text = deadline.decode("ascii", "replace")
        if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 20):
            raise BadFeedReply(f"entry {cid}: deadline {text!r} is not an integer")
    return Change(cid, op.decode("utf-8", "replace"), key, fields.get(b"value"),
                  None if deadline is None else int(deadline))


def parse_range(reply: Any) -> list[Change]:
    """An XRANGE reply (a list of entries), in the order given."""
    if not isinstance(reply, list):
        raise BadFeedReply(f"not a list of stream entries: {_short(reply)}")
    return [parse_entry(e) for e in reply]


def parse_xread(reply: Any, key: bytes) -> list[Change]:
    """An XREAD reply for the one stream ``key``: ``[[key, [entry, ...]]]`` (RESP3: a map
    ``{key: [entry, ...]}``); None (the BLOCK timed out) is no entry."""
    if reply is None:
        return []
    if isinstance(reply, dict):
        reply = [[k, v] for k, v in reply.items()]
    if (not isinstance(reply, list) or len(reply) != 1 or not isinstance(reply[0], list)
            or len(reply[0]) != 2):
        raise BadFeedReply(f"not an XREAD reply for one stream: {_short(reply)}")
    name, entries = reply[0]
    if name != key:
        raise BadFeedReply(f"XREAD answered stream {_short(name)}, asked {key!r}")
    return parse_range(entries)


def check_order(changes: list[Change], after: ChangeId) -> None:
    """Every id after ``after`` and after the one before: a node that answers an id
    twice or out of order is broken (BadFeedReply), and nothing of its reply is used."""
    last = after
    for c in changes:
        if c.id <= last:
            raise BadFeedReply(f"id {c.id} does not follow {last}")
        last = c.id


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
