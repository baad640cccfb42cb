"""AppendEntries whose entries are packed once for every follower that gets them.

A leader sends the entries of one Ready to each follower at the same next index: the
messages differ in ``dst`` (and perhaps ``commit`` or ``seq``), their entries are the very
same ``Entry`` objects (slices of one log). Packing the entries is nearly all of such a
message's encoding (about 1 us per entry on the loaded 2-core machine, against a few us
for the rest), so ``AppendEncoder`` keeps the packed entries of the last few messages and
reuses them when a message holds the same Entry objects; only the few fields around them
are packed per follower. The bytes are exactly ``wire.record.encode``'s (msgpack is
context-free): ``[tag, term, src, dst, prev_index, prev_term, [entries...], commit, seq]``.
"""

from __future__ import annotations

from operator import attrgetter, is_

import attrs
import msgpack

from wire.raft import AppendEntries, Entry
from wire.record import MAX_INT, encode, encoder

_packer = msgpack.Packer(use_bin_type=True)
_FIELDS = [a.name for a in attrs.fields(AppendEntries)]
_AT = _FIELDS.index("entries")
_before, _after = attrgetter(*_FIELDS[:_AT]), attrgetter(*_FIELDS[_AT + 1:])
assert len(_FIELDS) < 16 and _AT >= 2 and len(_FIELDS) - _AT - 1 >= 2  # tuples, fixarrays
_entry = encoder(Entry)
_HEAD = (_packer.pack_array_header(len(_FIELDS) + 1)
         + _packer.pack(AppendEntries.__wire_tag__))  # type: ignore[attr-defined]


class AppendEncoder:
    """``encode(msg)`` for AppendEntries, sharing the packed entries between messages
    that hold the same Entry objects (compared by identity: equal objects pack equally,
    and no Raft property is relied on). Keeps the last ``keep`` packings, a few Readys'
    worth: entries are packed at most once per follower link otherwise, as before."""

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._packed: list[tuple[tuple[object, ...], bytes]] = []
        self.hits = self.misses = 0

    def encode(self, msg: AppendEntries) -> bytes:
        """``wire.record.encode(msg)``; raises as it does."""
        if type(msg) is not AppendEntries or type(msg.entries) is not tuple or not msg.entries:
            return encode(msg)  # (a heartbeat: nothing to share)
        head, tail = _before(msg), _after(msg)
        for v in (*head, *tail):
            if type(v) is not int or v < 0 or v > MAX_INT:
                return encode(msg)  # raises, naming the bad field
        entries = msg.entries
        packed = self._lookup(entries)
        if packed is None:
            # The entries array, header included, in one pack; each Entry checked (and
            # a bad one refused) by the same generated encoder as ``encode``'s.
            packed = _packer.pack([_entry(e, "AppendEntries.entries") for e in entries])
            self._packed.append((entries, packed))
            if len(self._packed) > self._keep:
                del self._packed[0]
            self.misses += 1
        else:
            self.hits += 1
        # The fields around the entries, each run packed as one array without its header
        # (a fixarray's one byte: fewer than 16 fields).
        pack = _packer.pack
        return b"".join((_HEAD, pack(head)[1:], packed, pack(tail)[1:]))

    def _lookup(self, entries: tuple[object, ...]) -> bytes | None:
        n = len(entries)
        for held, packed in reversed(self._packed):
            if (len(held) == n and held[0] is entries[0] and held[-1] is entries[-1]
                    and all(map(is_, held, entries))):
                return packed
        return None
