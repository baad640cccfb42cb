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
"""

from __future__ import annotations

_STAR, _QUESTION, _OPEN, _CLOSE, _BACKSLASH, _CARET, _DASH = b"*?[]\\^-"
_MAX_NESTING = 1000
_NO, _YES, _SPLIT = 0, 1, 2


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _at(pattern: bytes, i: int) -> int:
    return pattern[i] if i < len(pattern) else 0


def _match_from(pattern: bytes, string: bytes, p: int, s: int) -> tuple[int, int, int]:
    """Run the matcher's main loop from pattern[p:] / string[s:].

    Returns (_YES, ., .), (_NO, ., .), or (_SPLIT, p, s) when it reaches a ``*`` at ``p``
    (with ``string[s:]`` left) that is not the pattern's last byte: the caller then tries
    the rest of the pattern at each position of the string from ``s``.
    """
    plen, slen = len(pattern), len(string)
    while p < plen and s < slen:
        c = pattern[p]
        if c == _STAR:
            while p < plen and _at(pattern, p + 1) == _STAR:
                p += 1
            if plen - p == 1:
                return _YES, p, s
            return _SPLIT, p, s
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
                return _NO, p, s
            s += 1
        else:
            if c == _BACKSLASH and plen - p >= 2:
                p += 1
            if pattern[p] != string[s]:
                return _NO, p, s
            s += 1
        p += 1
        if s == slen:
            while _at(pattern, p) == _STAR:
                p += 1
            break
    return (_YES if p == plen and s == slen else _NO), p, s


def stringmatch(pattern: bytes, string: bytes) -> bool:
    """True if ``string`` matches the Redis glob ``pattern`` (case-sensitive, like KEYS)."""
    # Each frame is a pending '*': [its pattern index, the string index the rest starts at].
    stack: list[list[int]] = []
    p = s = 0
    while True:
        if len(stack) > _MAX_NESTING:
            result = _NO
        else:
            result, p, s = _match_from(pattern, string, p, s)
        if result == _SPLIT:
            stack.append([p, s])
            p += 1
            continue
        if result == _YES:
            return True
        if not stack:
            return False
        frame = stack[-1]
        frame[1] += 1
        if frame[1] >= len(string):
            # The rest failed at every position: Redis's skipLongerMatches ends the search.
            return False
        p, s = frame[0] + 1, frame[1]
