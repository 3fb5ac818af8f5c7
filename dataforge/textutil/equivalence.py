"""Are two final answers the same? Number and LaTeX normalisation, exact values, small symbolic checks.

Public API (issue 10's voting groups answers with `answer_key`):

- `normalize(answer) -> str`: the answer's string normal form (LaTeX noise, units, `$`, `%`, spaces,
  thousands separators, `x = ` prefixes removed; `\\dfrac`/`\\tfrac` -> `\\frac`, `\\frac12` -> `\\frac{1}{2}`,
  `\\sqrt3` -> `\\sqrt{3}`).
- `number(answer) -> Fraction | None`: the exact value when the answer is a plain number, decimal or simple
  fraction (`1,000`, `-2.50`, `3/4`, `\\frac{1}{2}`, `$18`, `50\\%`); no sympy involved.
- `equivalent(a, b) -> bool`: same number; else same value as small expressions (sympy: `\\frac{\\sqrt{3}}{2}`
  vs `\\sqrt3/2`, `2x+1` vs `1+2x`); else same normal form. Tuples (`1, 2`) compare element by element.
- `answer_key(answer) -> str`: a canonical key; equal keys mean equivalent answers, and equivalent answers
  get equal keys for numbers, normal forms and (almost always) expressions.

Percent signs are dropped, not divided by 100 (`50\\%` is `50`), as GSM8K and MATH answers write them.
Expressions go through a small parser of our own (no `eval`) that builds sympy objects; inputs longer than
`MAX_CHARS`, with more than `MAX_TOKENS` tokens, integer literals over 40 digits or exponents beyond
`MAX_EXPONENT` are compared as strings only, so a hostile answer cannot stall grading. sympy is imported
the first time an answer is not a plain number.
"""

from __future__ import annotations

import functools
import random
import re
from fractions import Fraction
from typing import Any

MAX_CHARS = 200
MAX_TOKENS = 80
MAX_EXPONENT = 64

_WRAPPERS = [(r"^\$+(.*?)\$+$", 1), (r"^\\\((.*)\\\)$", 1), (r"^\\\[(.*)\\\]$", 1)]
_DROP = re.compile(r"\\left\b|\\right\b|\\!|\\,|\\;|\\:|\\ |\\displaystyle\b|\\quad\b|\\qquad\b")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b")
_TEXT_UNIT = re.compile(r"^(.*\S)\s*\\(?:text|textbf|mbox|mathrm)\{[^{}]*\}\s*$")
_TEXT_WHOLE = re.compile(r"^\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}$")
_ASSIGN = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?!=)(.+)$")
_WORD_UNIT = re.compile(r"^([-+]?\d[\d,]*(?:\.\d+)?)\s+[A-Za-z][A-Za-z.]*(?:\s+[A-Za-z][A-Za-z.]*)*$")
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:,|\{,\})\d{3})+(?![\d])")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\})")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d+|[A-Za-z])")
_DECIMAL = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)$")
_FRACTION = re.compile(r"^(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?)$")
_LATEX_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}$")


def _braced(m: re.Match[str]) -> str:
    a, b = (g if g.startswith("{") else "{" + g + "}" for g in m.groups())
    return rf"\frac{a}{b}"


@functools.lru_cache(maxsize=65536)
def normalize(answer: str) -> str:
    """The answer's string normal form (see the module docstring); text answers are lower-cased."""
    s = answer.strip()
    from dataforge.textutil.answers import boxed

    if re.match(r"^\\(?:boxed|fbox)\b", s):
        s = boxed(s) or s
    for rx, g in _WRAPPERS:
        m = re.match(rx, s, re.S)
        if m:
            s = m.group(g).strip()
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("−", "-")
    s = _DROP.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    m = _TEXT_UNIT.match(s)
    if m:
        s = m.group(1)
    m = _TEXT_WHOLE.match(s.strip())
    if m:
        s = m.group(1)
    m = _ASSIGN.match(s.strip())
    if m:
        s = m.group(1)
    s = s.strip().rstrip(".").strip()
    m = _WORD_UNIT.match(s)
    if m:
        s = m.group(1)
    s = _THOUSANDS.sub(lambda m: m.group(0).replace("{,}", "").replace(",", ""), s)
    s = _FRAC_SHORT.sub(_braced, s)
    s = _SQRT_SHORT.sub(lambda m: r"\sqrt{" + m.group(1) + "}", s)
    s = re.sub(r"\s+", "", s)
    s = s.removeprefix("+")
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    s = re.sub(r"(\d)\.0+(?!\d)", r"\1", s)  # 5.0 -> 5
    s = re.sub(r"(\.\d*?[1-9])0+(?!\d)", r"\1", s)  # 2.50 -> 2.5
    if "\\" not in s and not re.search(r"[0-9]", s):
        s = s.lower()
    return s


def _fraction(text: str) -> Fraction | None:
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


@functools.lru_cache(maxsize=65536)
def number(answer: str) -> Fraction | None:
    """The exact value of a plain number, decimal or simple fraction; None otherwise."""
    s = normalize(answer)
    if len(s) > MAX_CHARS:
        return None
    if _DECIMAL.match(s):
        return _fraction(s)
    m = _FRACTION.match(s)
    if m:
        num, den = _fraction(m.group(1)), _fraction(m.group(2))
        return num / den if num is not None and den else None
    m = _LATEX_FRAC.match(s)
    if m:
        num, den = _fraction(m.group(2)), _fraction(m.group(3))
        if num is None or not den:
            return None
        return -num / den if m.group(1) else num / den
    return None


def _split_tuple(s: str) -> list[str] | None:
    """Top-level comma-separated parts of a normalized answer (outer brackets dropped), or None."""
    inner = s[1:-1] if len(s) >= 2 and s[0] + s[-1] in ("()", "[]", "\\{\\}") else s
    parts, depth, cur = [], 0, []
    for c in inner:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts if len(parts) > 1 and all(parts) else None


def equivalent(a: str | None, b: str | None) -> bool:
    """True when the two answers mean the same (see the module docstring); None is never equivalent."""
    if a is None or b is None:
        return False
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return True
    va, vb = number(a), number(b)
    if va is not None and vb is not None:
        return va == vb
    ta, tb = _split_tuple(na), _split_tuple(nb)
    if ta is not None or tb is not None:
        return ta is not None and tb is not None and len(ta) == len(tb) and all(map(equivalent, ta, tb))
    ea, eb = expression(a), expression(b)
    if ea is None or eb is None:
        return False
    return _same_value(ea, eb)


@functools.lru_cache(maxsize=65536)
def answer_key(answer: str | None) -> str:
    """A canonical key for grouping answers by equivalence (majority voting); '' for no answer."""
    if answer is None:
        return ""
    v = number(answer)
    if v is not None:
        return str(v)
    s = normalize(answer)
    parts = _split_tuple(s)
    if parts is not None:
        return "(" + ",".join(answer_key(p) for p in parts) + ")"
    e = expression(answer)
    if e is not None:
        try:
            return str(_sympy().expand(e))
        except (TypeError, ValueError, OverflowError, RecursionError):
            return str(e)
    return s


# -- small expressions -------------------------------------------------------------------------------------

@functools.cache
def _sympy() -> Any:
    import sympy

    return sympy


class _Unparsable(Exception):
    pass


_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|\\[A-Za-z]+|[A-Za-z]+|[-+*/^(){}\[\]])")
_FUNCTIONS = {"sin", "cos", "tan", "ln", "log", "exp"}


def _tokens(s: str) -> list[str]:
    out, i = [], 0
    while i < len(s):
        m = _TOKEN.match(s, i)
        if not m:
            raise _Unparsable(s[i:])
        out.append(m.group(1))
        i = m.end()
        if len(out) > MAX_TOKENS:
            raise _Unparsable("too long")
    return out


class _Parser:
    """Recursive descent over a normalized answer: + - * / ^, implicit products, \\frac, \\sqrt, \\pi,
    \\cdot, \\times, \\div, a few functions, single-letter symbols. Builds sympy objects directly."""

    def __init__(self, tokens: list[str]):
        self.t = tokens
        self.i = 0
        self.sp = _sympy()

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise _Unparsable(f"expected {want!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        e = self.expr()
        if self.peek() is not None:
            raise _Unparsable(f"unexpected {self.peek()!r}")
        return e

    def expr(self) -> Any:
        e = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            e = e + rhs if op == "+" else e - rhs
        return e

    def term(self) -> Any:
        e = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "/", "\\cdot", "\\times", "\\div"):
                self.take()
                rhs = self.unary()
                e = e / rhs if tok in ("/", "\\div") else e * rhs
            elif tok is not None and self.starts_atom(tok):
                e = e * self.power()
            else:
                return e

    def unary(self) -> Any:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Any:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exp = self.unary() if self.peek() in ("-", "+") else self.atom_or_group()
            if self.peek() == "^":  # right-associative
                self.take()
                exp = exp ** self.atom_or_group()
                self.check_exponent(exp, base)
            self.check_exponent(exp, base)
            return base ** exp
        return base

    def check_exponent(self, exp: Any, base: Any) -> None:
        if exp.is_number:
            limit = MAX_EXPONENT if base.is_number else 16
            if abs(complex(exp.evalf(15))) > limit:
                raise _Unparsable("exponent too large")
        elif not base.is_number:
            raise _Unparsable("symbolic exponent of a symbolic base")

    def starts_atom(self, tok: str) -> bool:
        return tok[0].isdigit() or tok[0].isalpha() or tok in ("(", "{", "\\frac", "\\sqrt", "\\pi") or \
            tok.removeprefix("\\") in _FUNCTIONS

    def atom_or_group(self) -> Any:
        return self.atom()

    def group(self) -> Any:
        self.take("{")
        e = self.expr()
        self.take("}")
        return e

    def atom(self) -> Any:
        sp = self.sp
        tok = self.take()
        if tok[0].isdigit():
            if len(tok) > 40:
                raise _Unparsable("number too long")
            return sp.Rational(tok)
        if tok == "(":
            e = self.expr()
            self.take(")")
            return e
        if tok == "{":
            self.i -= 1
            return self.group()
        if tok == "\\frac":
            num = self.group()
            den = self.group()
            return num / den
        if tok == "\\sqrt":
            if self.peek() == "[":
                self.take("[")
                n = self.expr()
                self.take("]")
                if not (n.is_Integer and 1 < n <= MAX_EXPONENT):
                    raise _Unparsable("root index")
                return sp.root(self.group(), n)
            return sp.sqrt(self.group())
        if tok == "\\pi":
            return sp.pi
        name = tok.removeprefix("\\")
        if name in _FUNCTIONS:
            arg = self.group() if self.peek() == "{" else self.power()
            fn = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "ln": sp.log, "log": sp.log, "exp": sp.exp}[name]
            return fn(arg)
        if len(tok) == 1 and tok.isalpha():
            return sp.Symbol(tok)
        # A word (not a known function) is text, not a product of one-letter symbols.
        raise _Unparsable(f"unknown token {tok!r}")


@functools.lru_cache(maxsize=16384)
def expression(answer: str) -> Any | None:
    """The answer as a sympy expression when it is a small expression our parser reads; else None."""
    s = normalize(answer)
    if not s or len(s) > MAX_CHARS or "=" in s or "," in s:
        return None
    try:
        tokens = _tokens(s)
        if not tokens:
            return None
        e = _Parser(tokens).parse()
        if e.has(_sympy().zoo, _sympy().nan):
            return None
        return e
    except (_Unparsable, ZeroDivisionError, ValueError, TypeError, OverflowError, RecursionError):
        return None


def _same_value(a: Any, b: Any) -> bool:
    """Exact difference zero, or equal at a few random points (free symbols) to 12 significant digits."""
    sp = _sympy()
    try:
        diff = a - b
        if diff == 0:
            return True
        symbols = sorted(diff.free_symbols, key=str)
        rng = random.Random(0)
        for _ in range(3):
            point = {x: sp.Rational(rng.randint(2, 97), rng.randint(2, 13)) for x in symbols}
            va, vb = complex(a.subs(point).evalf(30)), complex(b.subs(point).evalf(30))
            if abs(va - vb) > 1e-12 * max(1.0, abs(va), abs(vb)):
                return False
        return True
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, RecursionError):
        return False
