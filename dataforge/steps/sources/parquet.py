"""`source.parquet`: an Apache Parquet file."""

from __future__ import annotations

from typing import Literal

import polars as pl

from dataforge.steps.base import PlanContext, RunContext, StepError
from dataforge.steps.sources.base import FileSource
from dataforge.steps.sources.checks import check_column_case, exact_integers, require_regular_file


class ParquetSource(FileSource):
    """An Apache Parquet file."""

    type: Literal["source.parquet"]

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        require_regular_file(self.id, ctx.resolve(self.path))
        try:
            return list(pl.read_parquet_schema(ctx.resolve(self.path)))
        except Exception as e:
            raise StepError(self.id, "path", f"{ctx.resolve(self.path)}: not a readable parquet file ({e})") from None

    def read(self, ctx: RunContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        require_regular_file(self.id, p)
        df = exact_integers(self.id, pl.read_parquet(p), str(p))
        mapping = self._mapping()
        check_column_case(self.id, list(mapping) if mapping else df.columns, str(p),
                          "columns" if mapping else "path")
        return df
