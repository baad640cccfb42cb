"""Redis's glob matcher (``stringmatchlen`` in Redis 7's util.c), ported to match it exactly.

KEYS and SCAN MATCH must select the same keys as Redis for any pattern, including the odd
ones, so this follows the C code step for step rather than translating to a regex:

* ``*`` any run of bytes, ``?`` any one byte, ``\\x`` a literal ``x`` (a trailing ``\\`` is
  literal), ``[abc]``, ``[^abc]``, ``[a-z]`` (ends may come in either order), ``\\`` escapes
  inside brackets too.
* An unclosed ``[`` takes the rest of the pattern as its set (``[abc`` matches ``a``), and a
  ``-`` at the end of a set is literal.
* Ranges compare bytes as C's signed ``char`` (x86): a byte >= 0x80 sorts below ``\\0``.
* C reads one byte past the pattern, where a NUL terminator sits; ``_at`` models that.
* Protection against abusive patterns as in Redis: more than 1000 nested ``*`` never match,
  and once the rest of a pattern failed after a ``*`` at every position, no longer match
  for an earlier ``*`` is tried (this keeps ``*a*a*a...b`` linear instead of exponential).

The C recursion is an explicit stack here, so deep patterns cannot hit Python's limit.

Why two paths and a step count: C walks a multi-MiB key in a millisecond, this port at
about 0.5 us a byte, so ``*b`` against one 8 MiB key held the event loop for seconds.

* Patterns of literals and ``*`` only (``user:*``, ``*b``, ``*foo*``), the common case, are
  matched with C-level ``bytes`` methods: the pieces between stars have a fixed length, so
  the leftmost occurrence of each in turn (``find``) decides, as a glob engine does. The
  same answers as the port (a property test checks it), in time linear in the key.
* Every other pattern runs the port as a generator (``Glob.steps``) that yields the work
  done (about one unit a matcher step) every ``STEP`` steps, so a caller that yields to its
  loop between slices (sliced.py: KEYS, SCAN MATCH) never holds it for one large key.
"""

from __future__ import annotations

from collections.abc import Generator

_STAR, _QUESTION, _OPEN, _CLOSE, _BACKSLASH, _CARET, _DASH = b"*?[]\\^-"
_MAX_NESTING = 1000
_NO, _YES, _SPLIT = 0, 1, 2
STEP = 256  # matcher steps between two yields of ``Glob.steps``
_BYTES_PER_UNIT = 256  # a C-level scan of this many bytes costs about one matcher step

Steps = Generator[int, None, bool]


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _at(pattern: bytes, i: int) -> int:
    return pattern[i] if i < len(pattern) else 0


def _match_from(pattern: bytes, string: bytes, p: int,
                s: int) -> Generator[int, None, tuple[int, int, int, int]]:
    """Run the matcher's main loop from pattern[p:] / string[s:], yielding work every STEP.

    Returns (_YES, ., ., work), (_NO, ., ., work), or (_SPLIT, p, s, work) when it reaches
    a ``*`` at ``p`` (with ``string[s:]`` left) that is not the pattern's last byte: the
    caller then tries the rest of the pattern at each position of the string from ``s``.
    ``work`` is what was done since the last yield.
    """
    plen, slen = len(pattern), len(string)
    work = 0
    while p < plen and s < slen:
        work += 1
        if work >= STEP:
            yield work
            work = 0
        c = pattern[p]
        if c == _STAR:
            while p < plen and _at(pattern, p + 1) == _STAR:
                p += 1
                work += 1
                if work >= STEP:
                    yield work
                    work = 0
            if plen - p == 1:
                return _YES, p, s, work
            return _SPLIT, p, s, work
        if c == _QUESTION:
            s += 1
        elif c == _OPEN:
            p += 1
            negate = _at(pattern, p) == _CARET
            if negate:
                p += 1
            ch = string[s]
            matched = False
            while True:
                work += 1
                if work >= STEP:
                    yield work
                    work = 0
                pc = _at(pattern, p)
                if pc == _BACKSLASH and plen - p >= 2:
                    p += 1
                    if pattern[p] == ch:
                        matched = True
                elif pc == _CLOSE:
                    break
                elif p >= plen:
                    p -= 1  # unclosed: back onto the last byte, the loop below steps past it
                    break
                elif plen - p >= 3 and pattern[p + 1] == _DASH:
                    lo, hi = _signed(pc), _signed(pattern[p + 2])
                    if lo > hi:
                        lo, hi = hi, lo
                    p += 2
                    if lo <= _signed(ch) <= hi:
                        matched = True
                elif pc == ch:
                    matched = True
                p += 1
            if matched == negate:
                return _NO, p, s, work
            s += 1
        else:
            if c == _BACKSLASH and plen - p >= 2:
                p += 1
            if pattern[p] != string[s]:
                return _NO, p, s, work
            s += 1
        p += 1
        if s == slen:
            while _at(pattern, p) == _STAR:
                p += 1
                work += 1
                if work >= STEP:
                    yield work
                    work = 0
            break
    return (_YES if p == plen and s == slen else _NO), p, s, work


def _port_steps(pattern: bytes, string: bytes) -> Steps:
    """The port of stringmatchlen, yielding its work as it goes."""
    # Each frame is a pending '*': [its pattern index, the string index the rest starts at].
    stack: list[list[int]] = []
    p = s = 0
    work = 0
    while True:
        work += 1
        if len(stack) > _MAX_NESTING:
            result = _NO
        else:
            result, p, s, done = yield from _match_from(pattern, string, p, s)
            work += done
        if work >= STEP:
            yield work
            work = 0
        if result == _SPLIT:
            stack.append([p, s])
            p += 1
            continue
        if result == _YES:
            break
        if not stack:
            break
        frame = stack[-1]
        frame[1] += 1
        if frame[1] >= len(string):
            # The rest failed at every position: Redis's skipLongerMatches ends the search.
            result = _NO
            break
        p, s = frame[0] + 1, frame[1]
    if work:
        yield work
    return result == _YES


class Glob:
    """A pattern ready to match many keys (KEYS, SCAN MATCH): decides once which path fits."""

    __slots__ = ("_pieces", "pattern")

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        # Literal-and-star patterns with at most _MAX_NESTING star runs (a match then never
        # nests deeper than Redis allows): the pieces between the stars.
        self._pieces: list[bytes] | None = None
        if not any(c in pattern for c in (b"?", b"[", b"\\")):
            pieces = pattern.split(b"*")
            if len([x for x in pieces[1:-1] if x]) + 1 <= _MAX_NESTING:
                self._pieces = pieces

    @property
    def in_python(self) -> bool:
        """True when this pattern runs the Python port (``?``, ``[``, ``\\``: ~0.5 us a
        step, so callers on the apply loop bound its steps), False for the C-level path."""
        return self._pieces is None

    def _fast(self, string: bytes) -> bool:
        pieces = self._pieces
        assert pieces is not None
        if not string:  # Redis: only the empty pattern matches the empty string
            return not self.pattern
        if len(pieces) == 1:
            return string == self.pattern
        head, tail = pieces[0], pieces[-1]
        end = len(string) - len(tail)
        if end < len(head) or not string.startswith(head) or not string.endswith(tail):
            return False
        at = len(head)
        for piece in pieces[1:-1]:
            if piece:
                found = string.find(piece, at, end)
                if found < 0:
                    return False
                at = found + len(piece)
        return True

    def steps(self, string: bytes) -> Steps:
        """Match ``string``, yielding the work done (units of about one matcher step, at
        least one) every ``STEP`` units or so; the generator returns the answer."""
        if self._pieces is not None:
            yield 1 + (len(string) + len(self.pattern)) // _BYTES_PER_UNIT
            return self._fast(string)
        return (yield from _port_steps(self.pattern, string))

    def match(self, string: bytes) -> bool:
        """Match ``string`` at once (for callers with no loop to yield to)."""
        if self._pieces is not None:
            return self._fast(string)
        work = self.steps(string)
        try:
            while True:
                next(work)
        except StopIteration as done:
            return bool(done.value)


def stringmatch(pattern: bytes, string: bytes) -> bool:
    """True if ``string`` matches the Redis glob ``pattern`` (case-sensitive, like KEYS)."""
    return Glob(pattern).match(string)
