"""Checks the readers share (what kind of file `path` is, `check_regular_file`, lives in `sources.base`):
column names the catalog can hold, integers kept exact, nesting it can store."""

from __future__ import annotations

import contextlib
import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from dataforge.steps.base import StepError

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl

INT64_MAX = 2**63 - 1
DECIMAL_DIGITS = 38
"""Integers outside int64 are stored as DECIMAL(38, 0): exact up to 38 digits."""


def first_repeat(names: list[str]) -> tuple[int, int] | None:
    """The 1-based positions of the first name given twice and of its second mention, or None."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name in seen:
            return seen[name], i
        seen[name] = i
    return None


def check_column_case(step_id: str, names: list[str], where: str, field: str = "path") -> None:
    """Refuse column names that differ only in case (`Text` and `text`): the catalog's SQL treats
    them as one name, so the second would be lost or fail the store. `field` is the recipe key to
    blame (`columns` when the names come from the step's own `columns:` mapping)."""
    seen: dict[str, str] = {}
    for name in names:
        if name != "id" and name.lower() == "id":
            raise StepError(step_id, field, f"{where}: column {name!r} would clash with dataforge's row id "
                            f"column `id` (the catalog's SQL ignores case); rename it with `columns:` "
                            f"(e.g. {{source_id: {name}}})")
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise StepError(step_id, field, f"{where}: columns {other!r} and {name!r} differ only in case, "
                            "which the catalog cannot keep apart; pick or rename them with "
                            f"`columns:` (e.g. {{{other.lower()}_1: {other}, {name.lower()}_2: {name}}})")


def exact_integers(step_id: str, df: pl.DataFrame, where: str,
                   line_of: Callable[[int], int] | None = None, field: str = "path") -> pl.DataFrame:
    """Keep integers outside the 64-bit range exact: such columns become DECIMAL(38, 0). An integer
    with more than 38 digits is refused, naming its row's line (`line_of(row_index)`) when known."""
    wide = [c for c, t in df.schema.items() if t in (pl.Int128, pl.UInt64, pl.UInt128)]
    if not wide:
        return df
    casts = []
    for c in wide:
        col = df[c]
        lo, hi = col.min(), col.max()
        if (lo is None or lo >= -INT64_MAX - 1) and (hi is None or hi <= INT64_MAX):
            casts.append(pl.col(c).cast(pl.Int64))
            continue
        limit = 10**DECIMAL_DIGITS
        too_big = (col.cast(pl.Float64).abs() >= float(limit)) if col.dtype != pl.UInt128 else None
        if too_big is not None and too_big.any():
            i = int(too_big.arg_true()[0])
            raise too_many_digits(step_id, where, c, str(col[i]), line_of(i) if line_of else None, field)
        casts.append(pl.col(c).cast(pl.Decimal(DECIMAL_DIGITS, 0)))
    return df.with_columns(casts)


def too_many_digits(step_id: str, where: str, column: str | None, value: str, line: int | None,
                    field: str = "path", hint: str = "write it as a string in the data to keep it as text") -> StepError:
    """The error for an integer too long to keep exactly."""
    at = f"{where}:{line}" if line is not None else where
    col = f" in {column!r}" if column else ""
    return StepError(step_id, field, f"{at}: integer {value[:24]}{'…' if len(value) > 24 else ''}{col} has more "
                     f"than {DECIMAL_DIGITS} digits, more than the catalog keeps exactly; "
                     f"{hint}")


MAX_NESTING = 48
"""Deepest nesting of lists/structs a column may have: Arrow's C interface, which carries tables
between polars and DuckDB, stops at 64 levels."""

_BRACKETS_DROP = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = None


def dtype_depth(dtype: pl.DataType) -> int:
    """Nesting levels of a polars type: 0 for scalars, 1 for a list of scalars, ..."""
    if isinstance(dtype, (pl.List, pl.Array)):
        return 1 + dtype_depth(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return 1 + max((dtype_depth(f.dtype) for f in dtype.fields), default=0)
    return 0


def value_depth(v: object) -> int:
    """Nesting levels of a parsed JSON value (iterative: safe on any depth)."""
    deepest, stack = 0, [(v, 0)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, dict):
            stack.extend((y, d + 1) for y in x.values())
        elif isinstance(x, list):
            stack.extend((y, d + 1) for y in x)
        else:
            deepest = max(deepest, d)
            continue
        deepest = max(deepest, d + 1)
    return deepest


def too_deep(step_id: str, at: str) -> StepError:
    """The error for data nested deeper than the catalog can store."""
    return StepError(step_id, "path", f"{at}: JSON nested more than {MAX_NESTING} levels deep "
                     "(lists/objects inside each other), deeper than the catalog can store")


def check_nesting(step_id: str, df: pl.DataFrame, where: str) -> None:
    """Refuse columns nested deeper than `MAX_NESTING` (readers that know lines check rows first)."""
    for c, t in df.schema.items():
        if dtype_depth(t) > MAX_NESTING:
            raise too_deep(step_id, f"{where}: column {c!r}")


@contextlib.contextmanager
def mapped(path: Path) -> Iterator[Any]:
    """The file memory-mapped read-only (an `mmap`), or None for an empty file, which cannot be mapped."""
    import mmap

    with open(path, "rb") as fh:
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            yield None
            return
        with mm:
            yield mm


def may_nest_deeper(path: Path, levels: int, chunk: int = 1 << 22) -> bool:
    """True when some stretch of the file opens more than `levels` brackets before closing them.

    A cheap guard run before native JSON parsers, which can crash on very deep nesting: only the
    bracket bytes of each chunk are kept (`bytes.translate`), then their running depth is taken.
    Brackets inside strings count too, so True means "look closer", not "too deep".
    """
    with mapped(path) as mm:
        return mm is not None and any(nests_deeper(mm[off:off + chunk], levels) for off in range(0, len(mm), chunk))


def nests_deeper(data: bytes, levels: int) -> bool:
    """`may_nest_deeper` of one stretch of bytes."""
    import numpy as np

    global _BRACKET_STEP
    brackets = data.translate(None, _BRACKETS_DROP)
    if len(brackets) <= levels:
        return False
    if len(brackets) < 1 << 16:  # a file's head: not worth importing numpy for
        depths = list(itertools.accumulate(1 if b in b"[{" else -1 for b in brackets))
        return max(depths) - min(0, min(depths)) > levels
    if _BRACKET_STEP is None:
        step = np.zeros(256, dtype=np.int8)
        step[ord("[")] = step[ord("{")] = 1
        step[ord("]")] = step[ord("}")] = -1
        _BRACKET_STEP = step
    depth = np.cumsum(_BRACKET_STEP[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int32)
    return int(depth.max()) - min(0, int(depth.min())) > levels


_ESCAPE = r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"  # a surrogate escape, high or low half
_PAIR = r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # a high half, then a low one: a character
_BACKSLASH = r"\\\\"  # an escaped backslash: the `\\ud83d` after it is text, not an escape
_ESCAPES = {str: tuple(re.compile(p) for p in (_ESCAPE, _PAIR, _BACKSLASH)) + ("",),
            bytes: tuple(re.compile(p.encode()) for p in (_ESCAPE, _PAIR, _BACKSLASH)) + (b"",)}
_SURROGATE = re.compile("[\ud800-\udfff]")


def may_hold_lone_surrogate(text) -> bool:
    """Whether JSON text (str, bytes or a mapped file) may hold a lone `\\ud800`-`\\udfff` escape, which
    is no character (Python's json keeps it; polars' reader silently stores it as U+0000). Escaped pairs
    (an emoji, as `json.dumps` writes it) are not lone. Text outside strings is not told apart, so a
    caller confirms on the parsed value (`has_lone_surrogate`)."""
    escape, pair, backslash, empty = _ESCAPES[str if isinstance(text, str) else bytes]
    if escape.search(text) is None:  # most text has none: one fast scan says so
        return False
    return escape.search(pair.sub(empty, backslash.sub(empty, text))) is not None


def has_lone_surrogate(v: object) -> bool:
    """True when a parsed JSON value holds a lone surrogate in a string or key (json pairs the rest)."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            if _SURROGATE.search(x):
                return True
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


def lone_surrogate(step_id: str, at: str) -> StepError:
    """The error for a string holding a lone UTF-16 surrogate escape."""
    return StepError(step_id, "path", f"{at}: string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), "
                     "which is no character; escape the whole pair (an emoji is two: \\ud83d\\ude00) or drop it")
