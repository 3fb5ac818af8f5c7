"""`source.jsonl`: one JSON object per line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple

from dataforge.steps.base import ID, PARENT, PlanContext, StepError, StepResult
from dataforge.steps.sources.base import FileSource, SqlLoad, names_one_file, sql_load
from dataforge.steps.sources.checks import MAX_NESTING, check_column_case, check_nesting, dtype_depth, \
    exact_integers, has_lone_surrogate, lone_surrogate, mapped, may_hold_lone_surrogate, may_nest_deeper, \
    nests_deeper, too_deep, too_many_digits, value_depth
from dataforge.steps.sources.jsonl_duckdb import read_selected, select_sql

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl

# Past this many open brackets the native readers are not trusted (pyarrow's crashes at a few thousand).
_NATIVE_NESTING = 1000


class JsonlSource(FileSource):
    """One JSON object per line."""

    type: Literal["source.jsonl"]
    kind_version: ClassVar[str] = "2"  # 2: a lone surrogate escape is a located error (1 stored U+0000)

    def prepare(self, ctx: PlanContext) -> StepResult | SqlLoad:
        """With `columns:` of plain types, no `limit`/`sample`: an `SqlLoad` for the build to store
        straight from the file, the whole file checked by one DuckDB scan that keeps no rows (by the
        store itself, for a build); anything else (or any problem the scan meets) is read by `load`,
        which names the line."""
        mapping = self._mapping()
        if (mapping and self.limit is None and self.sample is None and ID not in mapping and PARENT not in mapping
                and self.encoding.lower() in ("utf-8", "utf8")):
            # DuckDB's parser does not recurse, so deep nesting cannot crash it (a selected value nested
            # past 128 levels stops the scan; an unselected one is skipped): no `may_nest_deeper` pass
            # over the whole file, as the other native readers need.
            p = ctx.resolve(self.path)
            head = _head_schema(p, list(dict.fromkeys(mapping.values())))
            sql = select_sql(p, head, mapping) if head is not None else None
            load = sql_load(ctx, p, sql, list(mapping)) if sql is not None else None
            if load is not None:
                check_column_case(self.id, list(mapping), str(p), "columns")
                return load
        return self.load(ctx)

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        mapping = self._mapping()
        df = None
        if self.encoding.lower() in ("utf-8", "utf8") and not may_nest_deeper(p, _NATIVE_NESTING):
            wanted = list(dict.fromkeys(mapping.values())) if mapping else None
            head = _head_schema(p, wanted) if wanted else None
            df = read_selected(p, head) if head is not None else None  # DuckDB, multi-threaded
            if df is None:
                df = _read_ndjson_fast(p, wanted, head)
            if df is not None and (_may_hold_wide_integers(df) or
                                   any(dtype_depth(t) > MAX_NESTING for t in df.dtypes)):
                df = None  # floats from integers past 64 bits, or too deep: parse line by line to say where
        if df is None:
            df = self._read_lines(ctx, p)
        check_nesting(self.id, df, str(p))
        check_column_case(self.id, list(mapping) if mapping else df.columns, str(p),
                          "columns" if mapping else "path")
        return df

    def _read_lines(self, ctx: PlanContext, p: Path) -> pl.DataFrame:
        rows, lines = [], []
        # Split on newlines only: JSON strings may hold U+2028/U+0085, which str.splitlines() would break on.
        for n, line in enumerate(self._text(ctx).split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise StepError(self.id, "path", f"{p}:{n}: invalid JSON at column {e.colno}: {e.msg}") from None
            except RecursionError:
                raise StepError(self.id, "path", f"{p}:{n}: JSON nested too deeply to read "
                                "(arrays/objects more than about a thousand levels deep)") from None
            if not isinstance(obj, dict):
                raise StepError(self.id, "path", f"{p}:{n}: expected a JSON object, got {type(obj).__name__}")
            if value_depth(obj) > MAX_NESTING + 1:  # the row object itself is one level
                raise too_deep(self.id, f"{p}:{n}")
            if may_hold_lone_surrogate(line) and has_lone_surrogate(obj):
                raise lone_surrogate(self.id, f"{p}:{n}")
            rows.append(obj)
            lines.append(n)
        if not rows:
            return pl.DataFrame()
        try:
            df = pl.DataFrame(rows, infer_schema_length=None)
        except OverflowError:  # an integer past 128 bits
            i, key, value = _first_huge_int(rows)
            raise too_many_digits(self.id, str(p), key, value, lines[i]) from None
        return exact_integers(self.id, df, str(p), lines.__getitem__)


def _may_hold_wide_integers(df: pl.DataFrame) -> bool:
    """True when a float column holds a whole number past the int64 range (a parsed big integer?)."""
    for c, t in df.schema.items():
        if t in (pl.Float64, pl.Float32):
            col = df[c]
            if ((col.abs() >= 2.0**63) & (col == col.floor())).any():
                return True
    return False


def _first_huge_int(rows: list[dict]) -> tuple[int, str | None, str]:
    """(row index, key, value) of the first integer that polars cannot hold (past 128 bits)."""
    limit = 2**127
    for i, r in enumerate(rows):
        for k, v in r.items():
            stack = [v]
            while stack:
                x = stack.pop()
                if isinstance(x, int) and not isinstance(x, bool) and abs(x) >= limit:
                    return i, k, str(x)
                if isinstance(x, dict):
                    stack.extend(x.values())
                elif isinstance(x, list):
                    stack.extend(x)
    return 0, None, "?"


def _read_ndjson_fast(path: Path, wanted: list[str] | None = None, schema=None) -> pl.DataFrame | None:
    """Parse a JSONL file with Arrow's multi-threaded reader (schema over all blocks), else polars.

    With `wanted`, only those columns are built (typed from the file's first MiB: `schema`, as
    `_head_schema` gives it), which roughly halves the parse when a recipe selects a few columns
    of a wide file. Returns None when no
    reader accepts the file, so the caller's line-by-line path can name the bad line.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    arrow_errors = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
    read = pj.ReadOptions(block_size=16 << 20)
    if schema is not None and not isinstance(schema, pa.Schema):  # `HeadField`s
        schema = pa.schema([(f.name, pa.type_for_alias(f.type)) for f in schema])
    parses = [pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")] if schema else []
    for parse in [*parses, pj.ParseOptions()]:
        try:
            table = pj.read_json(path, read_options=read, parse_options=parse)
            table.validate(full=True)  # Arrow's reader does not check UTF-8; this does
            return pl.from_arrow(table)  # type: ignore[return-value]
        except arrow_errors:
            continue  # e.g. a type that changes after the first MiB: read every column instead
    with mapped(path) as mm:
        lone = mm is not None and may_hold_lone_surrogate(mm)
    if lone:
        return None  # polars stores a lone one as U+0000: the line-by-line path refuses it, naming the line
    try:
        if names_one_file(path):  # memory-mapped
            return pl.read_ndjson(path, infer_schema_length=None)
        with open(path, "rb") as fh:  # polars would read the path as a glob pattern
            return pl.read_ndjson(fh, infer_schema_length=None)
    except Exception:
        return None


class HeadField(NamedTuple):
    """A column of a head schema typed without pyarrow (`_flat_head_types`): its name and Arrow type name."""

    name: str
    type: str


# A string pyarrow's JSON reader may read as a timestamp starts so (`2020-01-01`, `2020-01-01T10`).
_MAYBE_TIMESTAMP = re.compile(r"\d{4}-\d")
_INT64 = range(-(2**63), 2**63)
_JSON_KIND = {str: "string", bool: "boolean", int: "number", float: "number"}  # ints and floats mix (as double)


def _flat_head_types(head: bytes, wanted: list[str]) -> list[HeadField] | None:
    """The types pyarrow's JSON reader gives the `wanted` keys of `head` (whole lines), found with the
    json module, for the common flat file: every line one object of strings, numbers, booleans and
    nulls. None wherever pyarrow could decide otherwise (nesting, a string that may be a timestamp,
    a key whose kind changes, a number past int64 or double, a blank or CR line, anything json
    refuses): `_head_schema` then asks pyarrow, which costs ~0.2 s to import. (A key twice in a
    line is refused later by DuckDB's and pyarrow's readers alike.)"""
    lines = head.count(b"\n")
    if not head.endswith(b"\n") or b"\r" in head or b"\n\n" in head or head.startswith(b"\n"):
        return None
    try:  # one array: a tenth of the time of a json.loads per line
        rows = json.loads(b"[" + head[:-1].replace(b"\n", b",") + b"]")
    except (ValueError, RecursionError):  # not JSON (or not UTF-8)
        return None
    if len(rows) != lines:  # a line held more than one value
        return None
    kinds: dict[str, set[type]] = {}
    for row in rows:
        if type(row) is not dict:
            return None
        for k, v in row.items():
            t = type(v)
            if t is str:
                if _MAYBE_TIMESTAMP.match(v):
                    return None
            elif t is int:
                if v not in _INT64:
                    return None
            elif t is float:
                if not math.isfinite(v):
                    return None
            elif v is None:
                continue
            elif t is not bool:  # an object or an array
                return None
            seen = kinds.setdefault(k, set())
            if t not in seen:
                seen.add(t)
                if len({_JSON_KIND[x] for x in seen}) > 1:
                    return None  # a key changing kind: pyarrow refuses the whole head
    names = {str: "string", bool: "bool", int: "int64", float: "double"}
    out = []
    for c in wanted:
        ts = kinds.get(c)
        if not ts:
            return None  # never seen, or only null
        out.append(HeadField(c, "double" if float in ts else names[next(iter(ts))]))
    return out


def _head_schema(path: Path, wanted: list[str]):
    """Schema of the `wanted` columns as the file's first MiB of whole lines types them (as pyarrow's
    JSON reader does; a list of `HeadField`, or an Arrow schema), or None (also when that MiB nests
    too deep for Arrow's reader)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    head = head[: head.rfind(b"\n") + 1]
    if not head.strip():
        return None
    flat = _flat_head_types(head, wanted)
    if flat is not None:
        return flat
    import pyarrow as pa
    import pyarrow.json as pj

    if nests_deeper(head, _NATIVE_NESTING):
        return None
    try:
        found = pj.read_json(pa.BufferReader(head)).schema
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if any(c not in found.names or pa.types.is_null(found.field(c).type) for c in wanted):
        return None
    return pa.schema([found.field(c) for c in wanted])
