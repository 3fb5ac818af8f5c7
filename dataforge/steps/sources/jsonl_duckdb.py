"""`source.jsonl`'s fast path: DuckDB's multi-threaded JSON reader, held to what the careful reader keeps.

Taken when a recipe selects `columns:` that the file's first MiB types as plain strings, integers,
floats or booleans (`jsonl._head_schema`, the careful path's own first guess). Each selected value
is read as raw JSON and checked in the same scan: a string column holding a number, an integer
past 64 bits, a float that is NaN, infinite or a whole number past 2**63 (a big integer the
careful path keeps exact) all stop the scan, and so does any line DuckDB cannot parse. On any
such stop this returns None and the careful path reads the file again and names the line. When
it succeeds the frame is the one the careful path would build (same values, same types), so
the row ids are the same (tests/test_source_fast_paths.py holds the two readers side by side).

A build goes further when the recipe takes the rows as they are (no `limit`/`sample`): the
catalog stores `select_sql` straight from the file, row ids computed in SQL, before the build's
first step runs (`sources.base.SqlLoad`); `validate` and `--dry-run` run it through `count_rows`,
which keeps no rows. Errors are found, and named by the careful path, before any step runs.

Two leniencies remain, where the careful path refuses a file DuckDB reads correctly: a trailing
comma (`[1, 2,]`, `{"a": 1,}`), which the careful path calls invalid JSON, and a value nested past
the careful path's ~1,000 levels in a key the recipe does not select, which DuckDB skips. Finding
either in Python would cost more than the fast path saves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dataforge.sqlquote import quote_ident, quote_literal
from dataforge.steps.sources.base import names_one_file

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl


_DUCK_TYPES = {"string": "str", "large_string": "str", "string_view": "str", "int64": "int",
               "double": "float", "bool": "bool"}


def _value_sql(col: str, kind: str) -> str:
    """SQL that turns the raw JSON of `col` into its value, or raises when the careful path would not
    accept it as `kind` (the raised error only sends the read to the careful path)."""
    j = quote_ident(col)
    stop = f"error({quote_literal(f'jsonl fast path: column {col} is not {kind}')})"
    if kind == "str":
        # A JSON string without a backslash is its text between the quotes, and holds no quote itself.
        raw = f"{j}::VARCHAR"
        return (f"CASE WHEN {j} IS NULL THEN NULL WHEN NOT starts_with({raw}, '\"') THEN {stop} "
                f"WHEN contains({raw}, '\\') THEN {j}->>'$' ELSE replace({raw}, '\"', '') END")
    if kind == "int":
        return (f"CASE WHEN {j} IS NULL THEN NULL WHEN json_type({j}) IN ('BIGINT', 'UBIGINT') "
                f"THEN {j}::BIGINT ELSE {stop} END")
    if kind == "bool":
        return f"CASE WHEN {j} IS NULL THEN NULL WHEN json_type({j}) = 'BOOLEAN' THEN {j}::BOOLEAN ELSE {stop} END"
    # float: NaN/inf are not JSON (the careful path decides); a whole number past 2**63 may be a big
    # integer that the careful path keeps exact.
    x = f"{j}::DOUBLE"
    return (f"CASE WHEN {j} IS NULL THEN NULL WHEN json_type({j}) NOT IN ('DOUBLE', 'BIGINT', 'UBIGINT') "
            f"THEN {stop} WHEN NOT isfinite({x}) OR (abs({x}) >= 9223372036854775808.0 AND {x} = floor({x})) "
            f"THEN {stop} ELSE {x} END")


def select_sql(path: Path, head, names: dict[str, str] | None = None,
               max_object_bytes: int | None = None) -> str | None:
    """A DuckDB SELECT of the columns of `head` (an Arrow schema of source keys, typed from the file's
    first MiB) from the whole JSONL file, each checked as above, or None when a type is not plain.
    `names` maps output name -> source key (default: the keys themselves, in `head`'s order); None
    too for a path DuckDB would read as a glob pattern."""
    if not names_one_file(path):
        return None
    kinds = {}
    for f in head:
        kind = _DUCK_TYPES.get(str(f.type))
        if kind is None:
            return None
        kinds[f.name] = kind
    names = names or {c: c for c in kinds}
    columns = "{" + ", ".join(f"{quote_literal(c)}: 'JSON'" for c in kinds) + "}"
    select = ", ".join(f"{_value_sql(src, kinds[src])} AS {quote_ident(dst)}" for dst, src in names.items())
    size = f", maximum_object_size = {max_object_bytes}" if max_object_bytes else ""
    return (f"SELECT {select} FROM read_json({quote_literal(str(path))}, format = 'newline_delimited', "
            f"hive_partitioning = false, columns = {columns}{size})")


def read_selected(path: Path, head) -> pl.DataFrame | None:
    """The columns of `head` read by DuckDB from the whole JSONL file, or None when the careful path
    must read it."""
    import duckdb

    from dataforge.memdb import cursor

    sql = select_sql(path, head, max_object_bytes=1 << 30)
    if sql is None:
        return None
    con = cursor()
    try:
        table = con.sql(sql).to_arrow_table()
    except duckdb.Error:
        return None
    finally:
        con.close()
    # One chunk: the catalog stores a single-chunk table about 20% faster than DuckDB's many batches.
    return pl.from_arrow(table.combine_chunks())  # type: ignore[return-value]
