"""Redis's glob (``stringmatchlen`` in Redis 7's util.c), matched in time linear in the string.

KEYS, SCAN MATCH, PSUBSCRIBE, ACL rules and the change feed's ``__raftkv:changes:<glob>``
must select what Redis selects for any pattern, including the odd ones:

* ``*`` any run of bytes, ``?`` any one byte, ``\\x`` a literal ``x`` (a trailing ``\\`` is
  literal), ``[abc]``, ``[^abc]``, ``[a-z]`` (ends may come in either order), ``\\`` escapes
  inside brackets too.
* An unclosed ``[`` takes the rest of the pattern as its set (``[abc`` matches ``a``), and a
  ``-`` at the end of a set is literal; ``[a-]`` is the range ``a``..``]``.
* Ranges compare bytes as C's signed ``char`` (x86): a byte >= 0x80 sorts below ``\\0``.
* Only the empty pattern matches the empty string (``*`` does not).
* More than 1000 nested ``*`` never match (Redis's CVE-2022-36021 limit): a match passes
  every ``*`` run that is not the pattern's end, one nesting level each, so a pattern with
  more than 1000 of them matches nothing.

Why not the C code's backtracking, step by step: in Python it walked a channel or key a byte
at a time (~1 s per MB for ``?*?*b``; attack3 held a leader's loop 17 s with one PUBLISH).
Here a pattern is parsed once into *segments*, the runs between ``*`` runs; each segment
matches a fixed number of bytes (every element is one byte: a literal, ``?`` or a set), so a
match is: the first segment at the start, the last at the end, and each middle one at its
leftmost occurrence after the previous one (taking a later occurrence never helps, which is
also why Redis's skipLongerMatches rule is sound). Finding a segment is done in C: a segment
of literals with ``bytes.find``, one of ``?`` only by arithmetic, others with a compiled
``re`` of fixed-length byte classes (no quantifier, so no backtracking: at most
positions x elements class tests, in C). The cost is linear in the string for any pattern.

``Glob.steps`` runs the same match as a generator that yields the work done (units of about
one old Python matcher step, ~0.3 us) every ``STEP`` units or so, searching a long string
in windows, so a caller that yields to its loop between slices (KEYS, SCAN MATCH in
sliced.py, Pub/Sub delivery in raftkv.server.pubsub) never holds it for one large key or
channel. Parsing a pattern is also work (a PSUBSCRIBE pattern may be megabytes): it happens
on the first match, inside ``steps``, never in the constructor.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator

_STAR, _QUESTION, _OPEN, _CLOSE, _BACKSLASH, _CARET, _DASH = b"*?[]\\^-"
_MAX_NESTING = 1000
STEP = 256  # work units between two yields of ``Glob.steps``
_BYTES_PER_UNIT = 256  # a C-level scan (find, startswith) of this many bytes: one unit
_CLASS_TESTS_PER_UNIT = 16  # a compiled segment's class tests (position x element) a unit
_CHUNK = 16  # elements compiled into one regex (compiling is Python work: bounded pieces)
_SEGMENT_UNITS = 32  # building a segment (measured: a few microseconds)
_COMPILE_UNITS = 256  # re.compile of one chunk (measured: ~50-100 us)
_CACHED_PATTERN_BYTES = 1024  # stringmatch keeps parsed patterns up to this long

Steps = Generator[int, None, bool]
# A segment element: a literal byte (int), ``None`` for ``?``, or a 256-byte membership
# table (bytes, 1 = in the set) for ``[...]``.
Element = int | bytes | None


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _at(pattern: bytes, i: int) -> int:
    return pattern[i] if i < len(pattern) else 0  # C reads the NUL terminator past the end


def _parse_class(pattern: bytes, p: int) -> Generator[int, None, tuple[bytes, int]]:
    """The set of the ``[`` at ``p`` as a membership table, and the index of its last
    pattern byte (the ``]``, or the pattern's last byte when unclosed), as Redis reads it."""
    plen = len(pattern)
    p += 1
    negate = _at(pattern, p) == _CARET
    if negate:
        p += 1
    signed = bytearray(256)  # indexed by signed value + 128
    work = 0
    while True:
        work += 1
        if work >= STEP:  # an unclosed '[' may hold the rest of a megabyte pattern
            yield work
            work = 0
        pc = _at(pattern, p)
        if pc == _BACKSLASH and plen - p >= 2:
            p += 1
            signed[_signed(pattern[p]) + 128] = 1
        elif pc == _CLOSE:
            break
        elif p >= plen:
            p -= 1  # unclosed: the set ends at the pattern's last byte
            break
        elif plen - p >= 3 and pattern[p + 1] == _DASH:
            lo, hi = sorted((_signed(pc), _signed(pattern[p + 2])))
            signed[lo + 128:hi + 129] = b"\x01" * (hi - lo + 1)
            p += 2
        else:
            signed[_signed(pc) + 128] = 1
        p += 1
    members = bytes(signed[128:] + signed[:128])  # back to unsigned byte order
    if negate:
        members = members.translate(bytes([1, 0]) + bytes(254))
    if work:
        yield work
    return members, p


def _parse(pattern: bytes) -> Generator[int, None, list[list[Element]]]:
    """The segments of ``pattern`` (runs of elements between ``*`` runs), yielding work."""
    segments: list[list[Element]] = [[]]
    plen = len(pattern)
    p = work = 0
    while p < plen:
        c = pattern[p]
        if c == _STAR:
            while p + 1 < plen and pattern[p + 1] == _STAR:
                p += 1
            segments.append([])
        elif c == _QUESTION:
            segments[-1].append(None)
        elif c == _OPEN:
            members, p = yield from _parse_class(pattern, p)
            segments[-1].append(members)
        else:
            if c == _BACKSLASH and plen - p >= 2:
                p += 1
            segments[-1].append(pattern[p])
        p += 1
        work += 1
        if work >= STEP:
            yield work
            work = 0
    if work:
        yield work
    return segments


@functools.lru_cache(maxsize=4096)
def _compile(regex: bytes) -> re.Pattern[bytes]:
    """Compiled chunks shared between patterns (``[ab]`` in ten thousand of them is one
    object), beyond ``re``'s own cache of 512."""
    return re.compile(regex)


def _class_regex(element: Element) -> bytes:
    if element is None:
        return rb"[\x00-\xff]"
    if isinstance(element, int):
        return b"\\x%02x" % element
    ranges = []
    b = 0
    while b < 256:
        if element[b]:
            end = b
            while end + 1 < 256 and element[end + 1]:
                end += 1
            ranges.append(b"\\x%02x-\\x%02x" % (b, end))
            b = end + 1
        else:
            b += 1
    return b"[" + b"".join(ranges) + b"]" if ranges else b"(?!)"


class _Segment:
    """A run of one-byte elements, found in a string in C."""

    __slots__ = ("chunks", "literal", "size")

    def __init__(self, elements: list[Element] | bytes) -> None:
        self.size = len(elements)
        self.literal: bytes | None = None  # all literals: bytes.find
        self.chunks: list[re.Pattern[bytes]] = []  # otherwise (unless all '?'): regexes
        if isinstance(elements, bytes):
            self.literal = elements
        elif all(isinstance(e, int) for e in elements):
            self.literal = bytes(elements)  # type: ignore[arg-type]

    def compile(self, elements: list[Element] | bytes) -> Generator[int, None, None]:
        if self.literal is not None or isinstance(elements, bytes) or all(
                e is None for e in elements):
            return
        for i in range(0, len(elements), _CHUNK):
            part = elements[i:i + _CHUNK]
            self.chunks.append(_compile(b"".join(_class_regex(e) for e in part)))
            yield _COMPILE_UNITS + 8 * len(part)

    def at_now(self, string: bytes, pos: int) -> bool:
        """``at`` in one go (no generator: a pattern against a short channel)."""
        if self.literal is not None:
            return string.startswith(self.literal, pos)
        return all(chunk.match(string, pos + i * _CHUNK) is not None
                   for i, chunk in enumerate(self.chunks))

    def find_now(self, string: bytes, start: int, end: int) -> int:
        """``find`` in one go."""
        last = end - self.size
        if last < start:
            return -1
        if self.literal is not None:
            return string.find(self.literal, start, end)
        if not self.chunks:
            return start
        first = self.chunks[0]
        per_position = min(self.size, _CHUNK)
        while start <= last:
            hit = first.search(string, start, last + per_position)
            if hit is None:
                return -1
            found = hit.start()
            if self.at_now(string, found):
                return found
            start = found + 1
        return -1

    def per_byte(self) -> float:
        """Work units a byte of string costs ``find`` at most."""
        if self.literal is not None:
            return 1 / _BYTES_PER_UNIT
        if not self.chunks:
            return 0.0
        # each position: the first chunk, and at a candidate the others (one unit each)
        return min(self.size, _CHUNK) / _CLASS_TESTS_PER_UNIT + len(self.chunks) - 1

    def at(self, string: bytes, pos: int) -> Generator[int, None, bool]:
        """Whether the segment matches ``string[pos:pos + size]`` (which must exist)."""
        if self.literal is not None:
            yield 1 + self.size // _BYTES_PER_UNIT
            return string.startswith(self.literal, pos)
        for i, chunk in enumerate(self.chunks):
            yield 1
            if chunk.match(string, pos + i * _CHUNK) is None:
                return False
        return True

    def find(self, string: bytes, start: int, end: int,
             sliced: bool) -> Generator[int, None, int]:
        """The leftmost position in [start, end - size] where the segment matches, or -1;
        a sliced search looks through windows of about STEP units of work each."""
        size = self.size
        last = end - size  # the last position it may start at
        if last < start:
            return -1
        if self.literal is not None:
            window = STEP * _BYTES_PER_UNIT if sliced else end
            while start <= last:
                stop = min(end, start + window + size)
                found = string.find(self.literal, start, stop)
                yield 1 + (stop - start) // _BYTES_PER_UNIT
                if found >= 0:
                    return found
                start = stop - size + 1
            return -1
        if not self.chunks:  # '?' only: any position, the leftmost
            return start
        first = self.chunks[0]
        per_position = min(size, _CHUNK)
        window = max(1, STEP * _CLASS_TESTS_PER_UNIT // per_position) if sliced else end
        while start <= last:
            stop = min(last + 1, start + window)  # candidate starts: [start, stop)
            hit = first.search(string, start, stop - 1 + per_position)
            if hit is None:
                yield 1 + (stop - start) * per_position // _CLASS_TESTS_PER_UNIT
                start = stop
                continue
            found = hit.start()
            yield 1 + (found - start + 1) * per_position // _CLASS_TESTS_PER_UNIT
            if (yield from self.at(string, found)):
                return found
            start = found + 1
        return -1


class Glob:
    """A pattern ready to match many strings: parsed (and its segments compiled) on first
    use. ``pattern`` is the pattern as given."""

    __slots__ = ("_base", "_head", "_middle", "_never", "_parsed", "_per_byte", "_short",
                 "_tail", "pattern")

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._parsed = False
        self._never = False  # more than 1000 nested stars: matches nothing
        self._head: _Segment | None = None
        self._tail: _Segment | None = None  # None: the pattern has no '*'
        self._middle: list[_Segment] = []
        self._per_byte = 0.0  # the middle segments' search cost, units a byte
        self._base = 2  # the cost of a match apart from the string's length
        self._short = -1  # strings up to this long cost at most a STEP (``steps``)

    @property
    def literal_and_stars(self) -> bool:
        """True for patterns of literals and ``*`` only (``user:*``): their segments are
        found with ``bytes.find``, in C and linear in the string, so a caller on the apply
        path need not count their work (``steps``) key by key."""
        return not any(c in self.pattern for c in (b"?", b"[", b"\\"))

    def _prepare(self) -> Generator[int, None, None]:
        pattern = self.pattern
        segments: list[list[Element]] | list[bytes]
        if b"?" in pattern or b"[" in pattern or b"\\" in pattern:
            segments = yield from _parse(pattern)
        else:  # literals and stars only, the common case (``user:*``): split in C
            pieces = pattern.split(b"*")
            segments = [pieces[0], *(x for x in pieces[1:-1] if x)]
            if len(pieces) > 1:
                segments.append(pieces[-1])
            yield 1 + len(pattern) // _BYTES_PER_UNIT
        # Every '*' run but a final one (an empty last segment) nests one level deeper.
        nesting = len(segments) - 1 - (len(segments) > 1 and not segments[-1])
        if nesting > _MAX_NESTING:
            self._never = True
        else:
            built = []
            for elements in segments:
                segment = _Segment(elements)
                yield _SEGMENT_UNITS
                yield from segment.compile(elements)
                built.append(segment)
            self._head = built[0]
            if len(built) > 1:
                self._tail = built[-1]
                self._middle = built[1:-1]
            self._per_byte = sum(segment.per_byte() for segment in self._middle)
            self._base = 2 + 2 * len(self._middle) + self._head.size // _BYTES_PER_UNIT
            rate = self._per_byte + 1 / _BYTES_PER_UNIT
            self._short = max(-1, int((STEP - self._base - 1) / rate))
        self._parsed = True

    def cost(self, length: int) -> int | None:
        """An upper bound on the work units of matching a string of ``length`` bytes with
        ``match``, or None before the pattern is parsed (the first match parses it, in
        ``steps``). A caller with a budget may ``match`` at once when this is small."""
        if not self._parsed:
            return None
        return self._base + length // _BYTES_PER_UNIT + int(length * self._per_byte)

    def _match_now(self, string: bytes) -> bool:
        """``_match`` in one go, once parsed (no generators: most matches are short)."""
        if not string:
            return not self.pattern
        if self._never:
            return False
        head, tail = self._head, self._tail
        assert head is not None
        n = len(string)
        if tail is None:
            return head.size == n and head.at_now(string, 0)
        end = n - tail.size
        if end < head.size or not head.at_now(string, 0) or not tail.at_now(string, end):
            return False
        at = head.size
        for segment in self._middle:
            found = segment.find_now(string, at, end)
            if found < 0:
                return False
            at = found + segment.size
        return True

    def _match(self, string: bytes, sliced: bool) -> Steps:
        if not self._parsed:
            yield from self._prepare()
        if not string:
            return not self.pattern  # Redis: only the empty pattern matches it
        if self._never:
            return False
        head, tail = self._head, self._tail
        assert head is not None
        n = len(string)
        if tail is None:  # no star: the one segment is the whole string
            return head.size == n and (yield from head.at(string, 0))
        end = n - tail.size
        if end < head.size or not (yield from head.at(string, 0)):
            return False
        if not (yield from tail.at(string, end)):
            return False
        at = head.size
        for segment in self._middle:
            found = yield from segment.find(string, at, end, sliced)
            if found < 0:
                return False
            at = found + segment.size
        return True

    def steps(self, string: bytes) -> Steps:
        """Match ``string``, yielding the work done (units of about one old Python matcher
        step, at least one) every ``STEP`` units or so; the generator returns the answer."""
        if len(string) <= self._short:  # parsed, and a bounded match: at once
            yield self._base + len(string) // _BYTES_PER_UNIT + int(len(string) * self._per_byte)
            return self._match_now(string)
        work = 0
        run = self._match(string, True)
        try:
            while True:
                work += next(run)
                if work >= STEP:
                    yield work
                    work = 0
        except StopIteration as done:
            yield work + 1
            return bool(done.value)

    def match(self, string: bytes) -> bool:
        """Match ``string`` at once (for callers with no loop to yield to)."""
        if not self._parsed:
            for _ in self._prepare():
                pass
        return self._match_now(string)


@functools.lru_cache(maxsize=1024)
def _cached(pattern: bytes) -> Glob:
    return Glob(pattern)


def stringmatch(pattern: bytes, string: bytes) -> bool:
    """True if ``string`` matches the Redis glob ``pattern`` (case-sensitive, like KEYS).
    Short patterns (ACL rules are checked on every command) are parsed once and kept."""
    glob = _cached(pattern) if len(pattern) <= _CACHED_PATTERN_BYTES else Glob(pattern)
    return glob.match(string)
