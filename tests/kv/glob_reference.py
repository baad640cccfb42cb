"""The reference for raftkv.kv.glob: a step-by-step port of Redis 7's ``stringmatchlen``.

This was the server's matcher until the pubsub-cost work (it walked a string a byte at a
time in Python). Its answers were checked against Redis's own C code compiled on ~900k
random patterns, so the linear-time matcher is tested against it (test_kv_glob.py).
"""

from __future__ import annotations

from collections.abc import Generator

_STAR, _QUESTION, _OPEN, _CLOSE, _BACKSLASH, _CARET, _DASH = b"*?[]\\^-"
_MAX_NESTING = 1000
_NO, _YES, _SPLIT = 0, 1, 2
STEP = 256  # matcher steps between two yields

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




def port_match(pattern: bytes, string: bytes) -> bool:
    """The port's answer."""
    work = _port_steps(pattern, string)
    try:
        while True:
            next(work)
    except StopIteration as done:
        return bool(done.value)
