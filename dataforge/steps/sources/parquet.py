"""`source.parquet`: an Apache Parquet file."""

from __future__ import annotations

from typing import Literal

import polars as pl

from dataforge.steps.base import PlanContext, RunContext, StepError
from dataforge.steps.sources.base import FileSource


class ParquetSource(FileSource):
    """An Apache Parquet file."""

    type: Literal["source.parquet"]

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        try:
            return list(pl.read_parquet_schema(ctx.resolve(self.path)))
        except Exception as e:
            raise StepError(self.id, "path", f"{ctx.resolve(self.path)}: not a readable parquet file ({e})") from None

    def read(self, ctx: RunContext) -> pl.DataFrame:
        return pl.read_parquet(ctx.resolve(self.path))
