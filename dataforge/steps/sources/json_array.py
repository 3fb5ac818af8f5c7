"""`source.json`: a JSON array of objects (or columnar object), optionally under a key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import polars as pl

from dataforge.steps.base import PlanContext, RunContext, StepError
from dataforge.steps.sources.base import FileSource


class JsonSource(FileSource):
    """A JSON array of objects, or an object holding such an array under `records_key`."""

    type: Literal["source.json"]
    records_key: str | None = None
    """Key of the array inside a top-level object, e.g. `data`."""

    _parsed: tuple[tuple, list[dict]] | None = None  # (file identity, records) from validation, for the run

    def _records(self, ctx: PlanContext) -> list[dict]:
        p = ctx.resolve(self.path)
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        if self._parsed is not None and self._parsed[0] == key:
            return self._parsed[1]
        recs = self._parse(ctx, p)
        self._parsed = (key, recs)
        return recs

    def _parse(self, ctx: PlanContext, p: Path) -> list[dict]:
        try:
            doc = json.loads(self._text(ctx))
        except ValueError as e:
            raise StepError(self.id, "path", f"{p}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if self.records_key is not None:
            if not isinstance(doc, dict) or self.records_key not in doc:
                raise StepError(self.id, "records_key", f"{p}: no top-level key {self.records_key!r}")
            doc = doc[self.records_key]
        if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):
            lengths = {len(v) for v in doc.values()}
            if len(lengths) <= 1:  # columnar: {"col": [...], ...}
                return pl.DataFrame(doc).to_dicts()
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise StepError(self.id, "path", f"{p}: expected an array of objects (or set records_key)")
        return doc

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        recs = self._records(ctx)
        cols: dict[str, None] = {}
        for r in recs[:1000]:
            cols.update(dict.fromkeys(r))
        return list(cols)

    def read(self, ctx: RunContext) -> pl.DataFrame:
        recs = self._records(ctx)
        self._parsed = None  # the frame holds the data from here on
        return pl.DataFrame(recs, infer_schema_length=None) if recs else pl.DataFrame()
