"""`source.sql`: rows from a read-only SQL query over the catalog."""

from __future__ import annotations

from typing import Any, Literal

import polars as pl

from dataforge.steps.base import PlanContext, RunContext, StepError
from dataforge.steps.sources.base import Source


class SqlSource(Source):
    """Rows from a read-only SQL query over the catalog, e.g. a filtered earlier dataset."""

    type: Literal["source.sql"]
    query: str
    """A SELECT over catalog datasets (their views) and tables."""

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        from dataforge.catalog import query as q

        return q.catalog_state(ctx.catalog_path)

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        from dataforge.catalog import query as q

        try:
            return q.describe(ctx.catalog_path, self.query)
        except Exception as e:
            raise StepError(self.id, "query", str(e).splitlines()[0]) from None

    def read(self, ctx: RunContext) -> pl.DataFrame:
        from dataforge.catalog import query as q

        try:
            return q.run_select(ctx.catalog_path, self.query)
        except Exception as e:
            raise StepError(self.id, "query", str(e).splitlines()[0]) from None
