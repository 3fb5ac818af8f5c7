"""`source.jsonl`: one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import polars as pl

from dataforge.steps.base import PlanContext, StepError
from dataforge.steps.sources.base import FileSource


class JsonlSource(FileSource):
    """One JSON object per line."""

    type: Literal["source.jsonl"]

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        if self.encoding.lower() in ("utf-8", "utf8"):
            mapping = self._mapping()
            df = _read_ndjson_fast(p, list(dict.fromkeys(mapping.values())) if mapping else None)
            if df is not None:
                return df
        rows = []
        # Split on newlines only: JSON strings may hold U+2028/U+0085, which str.splitlines() would break on.
        for n, line in enumerate(self._text(ctx).split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise StepError(self.id, "path", f"{p}:{n}: invalid JSON at column {e.colno}: {e.msg}") from None
            if not isinstance(obj, dict):
                raise StepError(self.id, "path", f"{p}:{n}: expected a JSON object, got {type(obj).__name__}")
            rows.append(obj)
        return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def _read_ndjson_fast(path: Path, wanted: list[str] | None = None) -> pl.DataFrame | None:
    """Parse a JSONL file with Arrow's multi-threaded reader (schema over all blocks), else polars.

    With `wanted`, only those columns are built (typed from the file's first MiB), which roughly
    halves the parse when a recipe selects a few columns of a wide file. Returns None when no
    reader accepts the file, so the caller's line-by-line path can name the bad line.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    arrow_errors = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
    read = pj.ReadOptions(block_size=16 << 20)
    schema = _head_schema(path, wanted) if wanted else None
    parses = [pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")] if schema else []
    for parse in [*parses, pj.ParseOptions()]:
        try:
            table = pj.read_json(path, read_options=read, parse_options=parse)
            table.validate(full=True)  # Arrow's reader does not check UTF-8; this does
            return pl.from_arrow(table)  # type: ignore[return-value]
        except arrow_errors:
            continue  # e.g. a type that changes after the first MiB: read every column instead
    try:
        return pl.read_ndjson(path, infer_schema_length=None)
    except Exception:
        return None


def _head_schema(path: Path, wanted: list[str]):
    """Arrow schema of the `wanted` columns as the file's first MiB of whole lines types them, or None."""
    import pyarrow as pa
    import pyarrow.json as pj

    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    head = head[: head.rfind(b"\n") + 1]
    if not head.strip():
        return None
    try:
        found = pj.read_json(pa.BufferReader(head)).schema
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if any(c not in found.names or pa.types.is_null(found.field(c).type) for c in wanted):
        return None
    return pa.schema([found.field(c) for c in wanted])
