"""`source.parquet`: an Apache Parquet file."""

from __future__ import annotations

from typing import Literal

import polars as pl

from dataforge.steps.base import PlanContext
from dataforge.steps.sources.base import FileSource


class ParquetSource(FileSource):
    """An Apache Parquet file."""

    type: Literal["source.parquet"]

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        return pl.read_parquet(ctx.resolve(self.path))
