"""`source.json`: a JSON array of objects (or columnar object), optionally under a key."""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import polars as pl

from dataforge.steps.base import PlanContext, StepError
from dataforge.steps.sources.base import FileSource
from dataforge.steps.sources.checks import MAX_NESTING, check_column_case, check_nesting, exact_integers, \
    has_lone_surrogate, lone_surrogate, may_hold_lone_surrogate, too_deep, too_many_digits, value_depth


class JsonSource(FileSource):
    """A JSON array of objects, or an object holding such an array under `records_key`."""

    type: Literal["source.json"]
    kind_version: ClassVar[str] = "2"  # 2: a lone surrogate escape is a located error (1 stored U+0000)
    records_key: str | None = None
    """Key of the array inside a top-level object, e.g. `data`."""

    def _records(self, ctx: PlanContext) -> list[dict]:
        p = ctx.resolve(self.path)
        text = self._text(ctx)
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise StepError(self.id, "path", f"{p}:{e.lineno}: invalid JSON at column {e.colno}: {e.msg}") from None
        except RecursionError:
            raise StepError(self.id, "path", f"{p}: JSON nested too deeply to read "
                            "(arrays/objects more than about a thousand levels deep)") from None
        if self.records_key is not None:
            if not isinstance(doc, dict) or self.records_key not in doc:
                raise StepError(self.id, "records_key", f"{p}: no top-level key {self.records_key!r}")
            doc = doc[self.records_key]
        if may_hold_lone_surrogate(text) and has_lone_surrogate(doc):  # json keeps it; polars cannot store it
            i = next((i for i, r in enumerate(doc) if has_lone_surrogate(r)), None) if isinstance(doc, list) else None
            raise lone_surrogate(self.id, f"{p}: record {i + 1:,}" if i is not None else str(p))
        if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):
            lengths = {len(v) for v in doc.values()}
            if len(lengths) <= 1:  # columnar: {"col": [...], ...}
                return pl.DataFrame(doc).to_dicts()
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise StepError(self.id, "path", f"{p}: expected an array of objects (or set records_key)")
        for i, r in enumerate(doc):
            if value_depth(r) > MAX_NESTING + 1:
                raise too_deep(self.id, f"{p}: record {i + 1:,}")
        return doc

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        recs = self._records(ctx)
        p = str(ctx.resolve(self.path))
        if not recs:
            return pl.DataFrame()
        try:
            df = pl.DataFrame(recs, infer_schema_length=None)
        except OverflowError:  # an integer past 128 bits
            raise too_many_digits(self.id, p, None, "(over 38 digits)", None) from None
        df = exact_integers(self.id, df, p)
        check_nesting(self.id, df, p)
        mapping = self._mapping()
        check_column_case(self.id, list(mapping) if mapping else df.columns, p,
                          "columns" if mapping else "path")
        return df
