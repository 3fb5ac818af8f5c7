"""`source.sql`: rows from a read-only SQL query over the catalog."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import polars as pl

from dataforge.steps.base import PlanContext, StepError
from dataforge.steps.sources.base import Source


class SqlSource(Source):
    """Rows from a read-only SQL query over the catalog, e.g. a filtered earlier dataset."""

    type: Literal["source.sql"]
    query: str
    """A SELECT over catalog datasets (their views) and tables."""
    allow_files: bool = False
    """Let the query read files (`read_csv('data.csv')`, relative to the recipe file). Off by default:
    files are better read by a source step, which tracks their content."""

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        from dataforge.catalog import query as q
        from dataforge.rows import content_ids

        try:
            state = q.read_state(ctx.catalog_path, self.query)
        except Exception as e:
            raise StepError(self.id, "query", str(e).splitlines()[0]) from None
        if not self.allow_files:
            return state
        # Files the query reads cannot be told from the SQL: the result's content stands for them.
        rows = self.read(ctx)
        ids = content_ids(rows).to_list() if rows.width else []
        return [state, hashlib.sha256("\n".join(ids).encode()).hexdigest()]

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        from dataforge.catalog import query as q

        try:
            return q.run_select(ctx.catalog_path, self.query, allow_files=self.allow_files,
                                files_from=ctx.recipe_dir.resolve() if self.allow_files else None)
        except Exception as e:
            raise StepError(self.id, "query", str(e).splitlines()[0]) from None
