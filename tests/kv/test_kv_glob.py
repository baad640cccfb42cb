"""raftkv.kv.glob: Redis's stringmatchlen, edge cases included.

The expected values in CASES were produced by compiling Redis 7's own stringmatchlen and
running it on each case; the port also agreed with it on ~900k random patterns over
``*?[]^-\\`` and bytes >= 0x80 (a one-off check, not repeated here: it needs a C compiler).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv.glob import STEP, Glob, _port_steps, stringmatch

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


def _regex_of(pattern: bytes) -> re.Pattern[bytes]:
    out = b""
    for i in range(len(pattern)):
        c = pattern[i : i + 1]
        out += b".*" if c == b"*" else b"." if c == b"?" else re.escape(c)
    return re.compile(out, re.S)


@settings(deadline=None)
@given(
    st.lists(st.sampled_from([b"*", b"?", b"a", b"b", b"\x00"]), max_size=8).map(b"".join),
    st.binary(max_size=8).map(lambda s: s.replace(b"\x01", b"a")),
)
def test_stars_and_marks_agree_with_a_regex(pattern: bytes, string: bytes) -> None:
    # For patterns of * ? and literals, Redis's glob is a full regex match, except that
    # a non-empty pattern never matches the empty string.
    expected = pattern == b"" if string == b"" else bool(_regex_of(pattern).fullmatch(string))
    assert stringmatch(pattern, string) is expected


@settings(deadline=None)
@given(st.text("abcxyz", min_size=1, max_size=4), st.booleans(), st.sampled_from("abcdxyz"))
def test_simple_classes_agree_with_a_regex(members: str, negate: bool, ch: str) -> None:
    pattern = ("[^" if negate else "[") + members + "]"
    assert stringmatch(pattern.encode(), ch.encode()) is bool(re.fullmatch(pattern, ch))


def _port(pattern: bytes, string: bytes) -> bool:
    """The step-by-step port alone, whatever path ``Glob`` would take."""
    work = _port_steps(pattern, string)
    try:
        while True:
            next(work)
    except StopIteration as done:
        return bool(done.value)


@settings(deadline=None, max_examples=1000)
@given(
    st.lists(st.sampled_from([b"*", b"a", b"b", b"ab", b"\x00", b"\xff"]), max_size=10)
    .map(b"".join),
    st.lists(st.sampled_from([b"a", b"b", b"\x00", b"\xff"]), max_size=12).map(b"".join),
)
def test_the_fast_path_for_literals_and_stars_answers_what_the_port_answers(
        pattern: bytes, string: bytes) -> None:
    glob = Glob(pattern)
    assert glob._pieces is not None  # the C-level path is the one under test
    assert glob.match(string) is _port(pattern, string)


def test_more_than_1000_star_runs_take_the_port_and_its_nesting_limit() -> None:
    # 1001 runs: a match would nest deeper than Redis allows, so it never matches.
    pattern = b"a*" * 1001 + b"b"
    assert Glob(pattern)._pieces is None
    assert stringmatch(pattern, b"a" * 1001 + b"b") is False
    assert stringmatch(b"a*" * 999 + b"b", b"a" * 999 + b"b") is True  # fast path


def test_one_large_key_costs_the_literal_path_no_python_step_per_byte() -> None:
    # '*b' against a 6 MiB key: the port walked every byte (3-4 s); find() does it in C.
    key = b"a" * (6 << 20)
    assert stringmatch(b"*b", key) is False
    assert stringmatch(b"*a", key) is True
    assert stringmatch(b"a*a*b*", key) is False


@pytest.mark.parametrize("pattern", [b"*?b", b"*[b]", b"\\a*b", b"[a]" + b"*" * 5000 + b"b",
                                     b"*" * 5000 + b"?b"])
def test_other_patterns_yield_their_work_in_bounded_steps(pattern: bytes) -> None:
    """A pattern the literal path cannot take walks a large key a step at a time, yielding
    every STEP units: a caller that yields to its loop between slices never holds it for
    the whole key (KEYS and SCAN MATCH do, see test_kv_sliced)."""
    key = b"a" * (1 << 18)
    work = Glob(pattern).steps(key)
    yields: list[int] = []
    try:
        while True:
            yields.append(next(work))
    except StopIteration as done:
        assert done.value is False
    assert max(yields) <= 2 * STEP  # (the port and its inner loop each keep < STEP)
    assert len(yields) >= len(key) // STEP  # one byte is at least one step
