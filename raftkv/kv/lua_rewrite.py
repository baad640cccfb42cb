"""Rewrites a script so that the VM operations whose cost grows with string length are charged.

Lua's VM runs ``==``, ``~=``, ``<``, ``<=``, ``>``, ``>=``, ``..`` and ``t[k]`` as single
instructions, whatever the operands: comparing two distinct 8 MB strings is one instruction
(a memcmp of 8 MB), so is concatenating them, and so is looking up a long string key whose
equal twin is in the table. No hook sees those costs, so before a script is compiled its
source is rewritten, a pure function of the body (the same on every replica):

* ``a OP b`` for those operators becomes ``(__rkv_eq(a, b))`` and so on (in parentheses:
  ``return a == b`` must not become a tail call, which would drop the script's frame from
  error positions), and a chain
  ``a .. b .. c`` becomes one ``__rkv_catn(a, b, c)``;
* every bracketed key ``t[k]`` and ``{[k] = v}`` becomes ``t[__rkv_key(k)]``;
* ``...`` in an expression becomes ``__rkv_va(...)`` (copying n varargs is one
  instruction in the VM);
* ``#x`` becomes ``(__rkv_len(x))``: a table's length found from its contents only (the
  VM's answers any border, which depends on the table's layout, hence on the runtime);

and the sandbox's helpers (lua_sandbox.py) charge the bytes before doing the operation itself,
with the VM's own semantics (metamethods included). Only tokens are inserted: line numbers,
comments and layout stay, so error messages point at the user's lines. A one-line prefix
(on line 1) binds the helpers to locals, and names starting with ``__rkv_`` are refused, so
a script can neither shadow nor reach them by name.

The parser follows lparser.c (Lua 5.4's grammar and operator priorities). It only has to
find operand extents: Lua's own compiler checks the result. A body this parser cannot read
is not run unrewritten: ``RewriteError``, and the caller reports Lua's compile error.
"""

from __future__ import annotations

import re

PREFIX = "__rkv_"
HELPERS = ("eq", "ne", "lt", "le", "gt", "ge", "cat", "catn", "key", "va", "len")
_BINARY = {"==": "eq", "~=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "..": "cat"}
# lparser.c's priority table: (left, right)
_PRIORITY = {
    "or": (1, 1), "and": (2, 2),
    "<": (3, 3), ">": (3, 3), "<=": (3, 3), ">=": (3, 3), "~=": (3, 3), "==": (3, 3),
    "|": (4, 4), "~": (5, 5), "&": (6, 6), "<<": (7, 7), ">>": (7, 7),
    "..": (9, 8), "+": (10, 10), "-": (10, 10),
    "*": (11, 11), "/": (11, 11), "//": (11, 11), "%": (11, 11),
    "^": (14, 13),
}
_UNARY_PRIORITY = 12
_KEYWORDS = frozenset((
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"))
_BLOCK_END = frozenset(("else", "elseif", "end", "until", "<eof>"))

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n\f\v]+)
  | (?P<comment>--(?:\[(?P<ceq>=*)\[.*?\](?P=ceq)\]|[^\n]*))
  | (?P<long>\[(?P<leq>=*)\[.*?\](?P=leq)\])
  | (?P<str>"(?:[^"\\\r\n]|\\z[ \t\r\n\f\v]*|\\\r\n|\\\n\r|\\.)*"
          |'(?:[^'\\\r\n]|\\z[ \t\r\n\f\v]*|\\\r\n|\\\n\r|\\.)*')
  | (?P<num>(?:0[xX](?:[pP][+-]|[0-9a-zA-Z_.])*|(?:[0-9]|\.[0-9])(?:[eEpP][+-]|[0-9a-zA-Z_.])*))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|<<|>>|//|::|[-+*/%^\#&~|<>=(){}\[\];:,.])
""", re.VERBOSE | re.DOTALL)


class RewriteError(ValueError):
    """The body is not Lua this parser can read (or uses a reserved ``__rkv_`` name)."""


class _Token:
    __slots__ = ("end", "kind", "start", "text")

    def __init__(self, kind: str, text: str, start: int, end: int) -> None:
        self.kind, self.text, self.start, self.end = kind, text, start, end


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    pos, n = 0, len(source)
    match = _TOKEN.match
    while pos < n:
        m = match(source, pos)
        if m is None:
            raise RewriteError(f"unexpected symbol at offset {pos}")
        kind = m.lastgroup
        if kind in ("ceq", "leq"):  # (only inside comment/long; lastgroup names the outer)
            kind = "comment" if m.group("comment") else "long"
        text = m.group(0)
        if kind == "long":
            kind = "str"
        if kind == "name":
            if text in _KEYWORDS:
                kind = "kw"
            elif text.startswith(PREFIX):
                raise RewriteError(f"names starting with {PREFIX} are reserved")
        if kind not in ("space", "comment"):
            out.append(_Token(kind, text, m.start(), m.end()))
        pos = m.end()
    out.append(_Token("eof", "<eof>", n, n))
    return out


class _Wrap:
    """``helper(`` before token ``start``, ``,`` for each operator token, ``)`` after ``end``."""

    __slots__ = ("end", "helper", "ops", "seq", "start")

    def __init__(self, helper: str, start: int, end: int, ops: list[int], seq: int) -> None:
        self.helper, self.start, self.end, self.ops, self.seq = helper, start, end, ops, seq


# An expression: its first and last token, and the wrap that is exactly it (for chaining ..).
_Span = tuple[int, int, "_Wrap | None"]


# Nesting (blocks and expressions) the parser follows: a few Python frames per level must
# stay far below the interpreter's recursion limit wherever apply runs; Lua's own parser
# stops at 200 C levels.
MAX_LEVELS = 100


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.toks = tokens
        self.i = 0
        self.wraps: list[_Wrap] = []
        self.drops: set[int] = set()  # operator tokens a wrap replaces (unary '#')
        self.levels = 0

    def _enter(self) -> None:
        self.levels += 1
        if self.levels > MAX_LEVELS:
            raise RewriteError(f"more than {MAX_LEVELS} nested levels")

    # -- tokens -------------------------------------------------------------------------
    def _is(self, text: str, ahead: int = 0) -> bool:
        tok = self.toks[min(self.i + ahead, len(self.toks) - 1)]
        return tok.text == text and tok.kind in ("op", "kw", "eof")

    def _expect(self, text: str) -> None:
        if not self._is(text):
            raise RewriteError(f"'{text}' expected near '{self.toks[self.i].text}'")
        self.i += 1

    def _name(self) -> None:
        if self.toks[self.i].kind != "name":
            raise RewriteError(f"<name> expected near '{self.toks[self.i].text}'")
        self.i += 1

    def _wrap(self, helper: str, start: int, end: int, ops: list[int]) -> _Wrap:
        wrap = _Wrap(helper, start, end, ops, len(self.wraps))
        self.wraps.append(wrap)
        return wrap

    # -- statements ---------------------------------------------------------------------
    def chunk(self) -> None:
        self._block()
        if self.toks[self.i].kind != "eof":
            raise RewriteError(f"'<eof>' expected near '{self.toks[self.i].text}'")

    def _block(self) -> None:
        self._enter()
        self._statements()
        self.levels -= 1

    def _statements(self) -> None:
        while not self._block_ends():
            if self._is("return"):
                self.i += 1
                if not self._block_ends() and not self._is(";"):
                    self._explist()
                if self._is(";"):
                    self.i += 1
                return
            self._statement()

    def _block_ends(self) -> bool:
        tok = self.toks[self.i]
        return tok.kind in ("kw", "eof") and tok.text in _BLOCK_END

    def _statement(self) -> None:  # one branch per statement kind, as lparser.c
        tok = self.toks[self.i]
        word = tok.text if tok.kind in ("kw", "op") else ""
        if word == ";" or word == "break":
            self.i += 1
        elif word == "if":
            self.i += 1
            self._cond_block("then")
            while self._is("elseif"):
                self.i += 1
                self._cond_block("then")
            if self._is("else"):
                self.i += 1
                self._block()
            self._expect("end")
        elif word == "while":
            self.i += 1
            self._cond_block("do")
            self._expect("end")
        elif word == "do":
            self.i += 1
            self._block()
            self._expect("end")
        elif word == "for":
            self.i += 1
            self._name()
            if self._is("="):
                self.i += 1
                self._explist()
            else:
                while self._is(","):
                    self.i += 1
                    self._name()
                self._expect("in")
                self._explist()
            self._expect("do")
            self._block()
            self._expect("end")
        elif word == "repeat":
            self.i += 1
            self._block()
            self._expect("until")
            self._expr()
        elif word == "function":
            self.i += 1
            self._name()
            while self._is("."):
                self.i += 1
                self._name()
            if self._is(":"):
                self.i += 1
                self._name()
            self._funcbody()
        elif word == "local":
            self.i += 1
            if self._is("function"):
                self.i += 1
                self._name()
                self._funcbody()
                return
            self._local_name()
            while self._is(","):
                self.i += 1
                self._local_name()
            if self._is("="):
                self.i += 1
                self._explist()
        elif word == "::":
            self.i += 1
            self._name()
            self._expect("::")
        elif word == "goto":
            self.i += 1
            self._name()
        else:
            self._suffixedexp()
            if self._is("=") or self._is(","):
                while self._is(","):
                    self.i += 1
                    self._suffixedexp()
                self._expect("=")
                self._explist()

    def _cond_block(self, word: str) -> None:
        self._expr()
        self._expect(word)
        self._block()

    def _local_name(self) -> None:
        self._name()
        if self._is("<"):  # attribute: <const> or <close>
            self.i += 1
            self._name()
            self._expect(">")

    def _funcbody(self) -> None:
        self._expect("(")
        while not self._is(")"):
            if self._is("..."):
                self.i += 1
                break
            self._name()
            if not self._is(","):
                break
            self.i += 1
        self._expect(")")
        self._block()
        self._expect("end")

    # -- expressions --------------------------------------------------------------------
    def _explist(self) -> None:
        self._expr()
        while self._is(","):
            self.i += 1
            self._expr()

    def _expr(self) -> _Span:
        return self._subexpr(0)

    def _subexpr(self, limit: int) -> _Span:
        self._enter()
        span = self._operators(limit)
        self.levels -= 1
        return span

    def _operators(self, limit: int) -> _Span:
        tok = self.toks[self.i]
        if (tok.kind == "kw" and tok.text == "not") or (
                tok.kind == "op" and tok.text in ("-", "#", "~")):
            start = self.i
            self.i += 1
            _, end, _ = self._subexpr(_UNARY_PRIORITY)
            if tok.text == "#":  # __rkv_len(x): the '#' token itself is dropped
                self._wrap("len", start, end, [])
                self.drops.add(start)
            left: _Span = (start, end, None)
        else:
            left = self._simpleexp()
        while True:
            tok = self.toks[self.i]
            op = tok.text if tok.kind in ("op", "kw") else ""
            priority = _PRIORITY.get(op)
            if priority is None or priority[0] <= limit:
                return left
            at = self.i
            self.i += 1
            right = self._subexpr(priority[1])
            left = self._binary(op, at, left, right)

    def _binary(self, op: str, at: int, left: _Span, right: _Span) -> _Span:
        helper = _BINARY.get(op)
        if helper is None:
            return (left[0], right[1], None)
        inner = right[2]
        if helper == "cat" and inner is not None and inner.helper in ("cat", "catn"):
            inner.helper = "catn"
            inner.start = left[0]  # a .. (b .. c) unparenthesized: one call, in order
            inner.ops.insert(0, at)
            return (left[0], right[1], inner)
        return (left[0], right[1], self._wrap(helper, left[0], right[1], [at]))

    def _simpleexp(self) -> _Span:
        tok = self.toks[self.i]
        if tok.kind == "op" and tok.text == "...":  # copies every vararg: charged
            self._wrap("va", self.i, self.i, [])
            self.i += 1
            return (self.i - 1, self.i - 1, None)
        if tok.kind in ("num", "str") or (tok.kind == "kw" and tok.text in (
                "nil", "true", "false")):
            self.i += 1
            return (self.i - 1, self.i - 1, None)
        start = self.i
        if tok.kind == "op" and tok.text == "{":
            self._constructor()
        elif tok.kind == "kw" and tok.text == "function":
            self.i += 1
            self._funcbody()
        else:
            return self._suffixedexp()
        return (start, self.i - 1, None)

    def _suffixedexp(self) -> _Span:
        start = self.i
        tok = self.toks[self.i]
        if tok.kind == "name":
            self.i += 1
        elif tok.kind == "op" and tok.text == "(":
            self.i += 1
            self._expr()
            self._expect(")")
        else:
            raise RewriteError(f"unexpected symbol near '{tok.text}'")
        while True:
            tok = self.toks[self.i]
            if tok.kind == "str":
                self.i += 1
                continue
            if tok.kind != "op":
                break
            if tok.text == ".":
                self.i += 1
                self._name()
            elif tok.text == "[":
                self._bracket_key()
            elif tok.text == ":":
                self.i += 1
                self._name()
                self._funcargs()
            elif tok.text in ("(", "{"):
                self._funcargs()
            else:
                break
        return (start, self.i - 1, None)

    def _bracket_key(self) -> None:
        self.i += 1
        first, last, _ = self._expr()
        if first != last or self.toks[first].kind not in ("num", "kw"):  # t[1], t[true]
            self._wrap("key", first, last, [])
        self._expect("]")

    def _funcargs(self) -> None:
        tok = self.toks[self.i]
        if tok.kind == "str":
            self.i += 1
        elif tok.text == "{":
            self._constructor()
        else:
            self._expect("(")
            if not self._is(")"):
                self._explist()
            self._expect(")")

    def _constructor(self) -> None:
        self._expect("{")
        while not self._is("}"):
            if self.toks[self.i].kind == "name" and self._is("=", 1):
                self.i += 2
                self._expr()
            elif self._is("["):
                self._bracket_key()
                self._expect("=")
                self._expr()
            else:
                self._expr()
            if self._is(",") or self._is(";"):
                self.i += 1
            else:
                break
        self._expect("}")


def rewrite(body: bytes) -> bytes:
    """``body`` with the costly operations turned into charged helper calls (see above);
    ``RewriteError`` if it is not Lua this parser reads."""
    source = body.decode("latin-1")  # any byte is one character, and back
    tokens = _tokens(source)
    parser = _Parser(tokens)
    parser.chunk()
    before: dict[int, list[_Wrap]] = {}
    after: dict[int, list[_Wrap]] = {}
    commas: set[int] = set()
    for wrap in parser.wraps:
        before.setdefault(wrap.start, []).append(wrap)
        after.setdefault(wrap.end, []).append(wrap)
        commas.update(wrap.ops)
    out: list[str] = ["local " + ", ".join(PREFIX + h for h in HELPERS) + " = "
                      + ", ".join(PREFIX + h for h in HELPERS) + "; "]
    pos = 0
    for index, tok in enumerate(tokens):
        out.append(source[pos:tok.start])
        for wrap in sorted(before.get(index, ()), key=lambda w: (-w.end, -w.seq)):
            # (f(x)): never a tail call; but __rkv_va(...) keeps all its values
            out.append(PREFIX + "va(" if wrap.helper == "va" else
                       "(" + PREFIX + wrap.helper + "(")
        if tok.kind != "eof":
            out.append("," if index in commas else "" if index in parser.drops else tok.text)
        for wrap in after.get(index, ()):
            out.append(")" if wrap.helper == "va" else "))")
        pos = tok.end
    return "".join(out).encode("latin-1")
