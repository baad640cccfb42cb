"""raftkv.kv.glob: Redis's stringmatchlen, edge cases included, in time linear in the string.

The expected values in CASES were produced by compiling Redis 7's own stringmatchlen and
running it on each case; the step-by-step port (glob_reference.py, the matcher before this
one) also agreed with it on ~900k random patterns over ``*?[]^-\\`` and bytes >= 0x80 (a
one-off check, not repeated here: it needs a C compiler), so the linear matcher is checked
against the port on generated patterns, and against a regex reference for well-formed ones.
Cost is counted in the matcher's own work units, never timed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from glob_reference import port_match
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv.glob import STEP, Glob, stringmatch

CASES = [
    # Only the empty pattern matches the empty string (KEYS/SCAN treat "*" specially).
    (b"*", b"", False),
    (b"*", b"abc", True),
    (b"", b"", True),
    (b"", b"a", False),
    (b"a", b"", False),
    (b"?", b"", False),
    (b"?*", b"", False),
    (b"*?", b"a", True),
    (b"h?llo", b"hello", True),
    (b"h?llo", b"hllo", False),
    (b"h*llo", b"hllo", True),
    (b"h*llo", b"heeeello", True),
    (b"h[ae]llo", b"hello", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[a-b]llo", b"hcllo", False),
    (b"h[b-a]llo", b"hallo", True),  # reversed range
    (b"[z-a]", b"m", True),
    (b"[a-z]x", b"mx", True),
    (b"user:[0-9]*", b"user:42", True),
    (b"user:[0-9]*", b"user:x", False),
    # Escapes, outside and inside brackets; a trailing backslash is literal.
    (b"\\*", b"*", True),
    (b"\\*", b"a", False),
    (b"\\?", b"?", True),
    (b"\\?", b"x", False),
    (b"\\a", b"a", True),
    (b"a\\", b"a\\", True),
    (b"\\", b"\\", True),
    (b"[\\]]", b"]", True),
    (b"[\\", b"\\", True),
    (b"[a\\", b"\\", True),
    # Unclosed and odd brackets.
    (b"[abc", b"a", True),
    (b"[abc", b"c", True),
    (b"[abc", b"d", False),
    (b"[", b"[", False),
    (b"[", b"a", False),
    (b"[]", b"a", False),
    (b"[]", b"]", False),
    (b"[]]", b"]", False),  # "[]" is an empty set, then a literal "]"
    (b"[]a]", b"a", False),
    (b"[]a]", b"]", False),
    (b"[a]]", b"a]", True),
    (b"[a]]", b"a", False),
    (b"[^]", b"a", True),
    (b"[^]", b"^", True),
    (b"[^", b"^", True),
    (b"[^", b"a", True),
    (b"[[]", b"[", True),
    (b"[*]", b"*", True),
    (b"[*]", b"a", False),
    (b"[?]", b"?", True),
    # "-" at the edges: "[a-]" is the range "a".."]" (the "]" is taken as its end).
    (b"[a-]", b"-", False),
    (b"[a-]", b"b", False),
    (b"[-a]", b"-", True),
    (b"[a-", b"b", False),
    (b"[a-", b"-", True),
    (b"[a-b", b"b", True),
    # Ranges compare signed chars: bytes >= 0x80 are below NUL.
    (b"[\x00-\xff]", b"a", False),
    (b"[\x00-\xff]", b"\x80", False),
    (b"[a-\xff]", b"0", True),
    (b"[a-\xff]", b"b", False),
    (b"[\x80-\xff]", b"\x90", True),
    # Stars, NUL bytes, backtracking.
    (b"a*", b"a", True),
    (b"a**", b"a", True),
    (b"**a", b"a", True),
    (b"*a*", b"bab", True),
    (b"*a", b"ba\x00", False),
    (b"a\x00b", b"a\x00b", True),
    (b"a?b", b"a\x00b", True),
    (b"a*b*c", b"aXbYc", True),
    (b"a*b*c", b"aXbY", False),
    (b"*a*a*a*a*a*a*a*a*a*b", b"a" * 40, False),
]


@pytest.mark.parametrize(("pattern", "string", "expected"), CASES)
def test_redis_glob_table(pattern: bytes, string: bytes, expected: bool) -> None:
    assert stringmatch(pattern, string) is expected


def test_abusive_patterns_are_cheap_and_bounded() -> None:
    # Without Redis's skip-longer-matches rule this is exponential; it must return at once.
    assert stringmatch(b"*a" * 60 + b"b", b"a" * 200) is False
    # More than 1000 nested stars never match (Redis's CVE-2022-36021 limit), and the
    # explicit stack keeps deep patterns clear of Python's recursion limit.
    assert stringmatch(b"a*" * 990 + b"b", b"a" * 1000 + b"b") is True
    assert stringmatch(b"a*" * 1100, b"a" * 1300) is False
    assert stringmatch(b"*" * 5000 + b"x", b"x") is True


def _regex_of(pattern: bytes) -> re.Pattern[bytes] | None:
    """fnmatch-like reference: Redis's glob as a regex, for patterns whose sets are closed
    and hold no ``-`` range with a byte >= 0x80 (the signed-char quirk); None otherwise."""
    out, i, n = b"", 0, len(pattern)
    while i < n:
        c = pattern[i:i + 1]
        if c == b"*":
            out += b".*"
        elif c == b"?":
            out += b"."
        elif c == b"\\" and i + 1 < n:
            i += 1
            out += re.escape(pattern[i:i + 1])
        elif c == b"[":
            close = pattern.find(b"]", i + 1)
            body = pattern[i + 1:close]
            if close < 0 or b"\\" in body or not body or body == b"^" or b"-" in body:
                return None
            negate = body.startswith(b"^")
            members = b"".join(re.escape(bytes([b])) for b in body[negate:])
            out += b"[" + (b"^" if negate else b"") + members + b"]"
            i = close
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out, re.S)


_ALPHABET = [b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b"b", b"z", b"\x00", b"\x80",
             b"\xff"]
_STRING = st.lists(st.sampled_from([b"a", b"b", b"z", b"-", b"]", b"\x00", b"\x80", b"\xff"]),
                   max_size=12).map(b"".join)


@settings(deadline=None, max_examples=800)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=10).map(b"".join), _STRING)
def test_every_pattern_answers_what_redis_answers(pattern: bytes, string: bytes) -> None:
    """Any pattern over Redis's special bytes, odd ones included (unclosed sets, escapes,
    signed ranges): the same answer as the port of Redis's C code, at once or in steps."""
    expected = port_match(pattern, string)
    glob = Glob(pattern)
    assert glob.match(string) is expected
    assert _drain(glob.steps(string)) is expected


@settings(deadline=None, max_examples=600)
@given(st.lists(st.sampled_from([b"*", b"?", b"a", b"b", b"[ab]", b"[^a]", b"[a-z]", b"[z-a]",
                                 b"\\*", b"\\?", b"\\[", b"\x00"]), max_size=8).map(b"".join),
       _STRING)
def test_well_formed_patterns_agree_with_a_regex(pattern: bytes, string: bytes) -> None:
    """``*``, ``?``, ``[abc]``, ``[^a]``, ``[a-z]`` and escapes mean what fnmatch's regex
    translation means, except that only the empty pattern matches the empty string."""
    regex = _regex_of(pattern.replace(b"[a-z]", b"[" + bytes(range(97, 123)) + b"]")
                      .replace(b"[z-a]", b"[" + bytes(range(97, 123)) + b"]"))
    assert regex is not None
    expected = pattern == b"" if string == b"" else bool(regex.fullmatch(string))
    assert stringmatch(pattern, string) is expected


@settings(deadline=None)
@given(st.text("abcxyz", min_size=1, max_size=4), st.booleans(), st.sampled_from("abcdxyz"))
def test_simple_classes_agree_with_a_regex(members: str, negate: bool, ch: str) -> None:
    pattern = ("[^" if negate else "[") + members + "]"
    assert stringmatch(pattern.encode(), ch.encode()) is bool(re.fullmatch(pattern, ch))


def test_more_than_1000_star_runs_never_match() -> None:
    # 1001 runs a match must pass: it would nest deeper than Redis allows.
    assert stringmatch(b"a*" * 1001 + b"b", b"a" * 1001 + b"b") is False
    assert port_match(b"a*" * 1001 + b"b", b"a" * 1001 + b"b") is False
    assert stringmatch(b"a*" * 1000 + b"b", b"a" * 1000 + b"b") is True
    assert stringmatch(b"*a" * 1000 + b"*", b"a" * 1000) is True  # a final run is free


def _drain(run: Iterator[int]) -> bool:
    try:
        while True:
            next(run)
    except StopIteration as done:
        return bool(done.value)


def _work(pattern: bytes, string: bytes) -> tuple[int, int, bool]:
    """Total work units and the largest single yield of matching ``string`` in steps."""
    run = Glob(pattern).steps(string)
    total = largest = 0
    try:
        while True:
            unit = next(run)
            total += unit
            largest = max(largest, unit)
    except StopIteration as done:
        return total, largest, bool(done.value)


# Patterns that made the old matcher walk a long string in Python, and worse ones for a
# matcher that retries a segment at every position.
COSTLY = [b"?*?*b", b"*?b", b"*[b]", b"\\a*b", b"[a]" + b"*" * 5000 + b"b", b"*" * 5000 + b"?b",
          b"*a*a*a*a*a*a*a*a*b", b"*[ab]" + b"[ab]" * 40 + b"c*", b"*a?" * 30 + b"b*",
          b"*" + b"?" * 300 + b"b", b"[^b]*[a-a]?*[^c]b"]


@pytest.mark.parametrize("pattern", COSTLY)
def test_the_work_grows_linearly_with_the_string(pattern: bytes) -> None:
    """Counted, not timed: matching a 10x longer string costs at most ~10x the work (a
    backtracking or per-byte-retry matcher costs far more), and no single piece of work
    between two yields is larger than a few STEPs (the largest indivisible piece is one
    regex compile of a set-heavy chunk), however long the string."""
    small, large = b"a" * 20_000, b"a" * 200_000
    work_small, _, answer_small = _work(pattern, small)
    work_large, largest, answer_large = _work(pattern, large)
    assert answer_small is answer_large is port_match(pattern, b"a" * 2000)
    assert work_large <= 11 * work_small + 2 * STEP
    assert largest <= 3 * STEP


def test_the_work_is_small_for_the_attack_pattern_on_a_4_mb_channel() -> None:
    """attack3: ``?*?*b`` against a 4 MB channel cost ~4 s in the step matcher (about one
    unit a byte); the segments are found in C, a few units per 256 bytes at most."""
    total, _, answer = _work(b"?*?*b", b"a" * 4_000_000)
    assert answer is False
    assert total < 4_000_000 // 64


def test_a_megabyte_pattern_is_parsed_in_steps() -> None:
    """Parsing is work too (a PSUBSCRIBE pattern may be megabytes, an unclosed set the
    whole of it): it happens on first use, yielding like the match."""
    pattern = b"[" + b"ab" * 500_000
    glob = Glob(pattern)
    total, largest, answer = _work(pattern, b"b")
    assert answer is True
    assert largest <= 2 * STEP and total >= len(pattern) // 4
    assert glob.match(b"c") is False
