"""`source.parquet`: an Apache Parquet file."""

from __future__ import annotations

from typing import Literal

import polars as pl

from dataforge.steps.base import PlanContext
from dataforge.steps.sources.base import FileSource
from dataforge.steps.sources.checks import check_column_case, exact_integers


class ParquetSource(FileSource):
    """An Apache Parquet file."""

    type: Literal["source.parquet"]

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        df = exact_integers(self.id, pl.read_parquet(p), str(p))
        mapping = self._mapping()
        check_column_case(self.id, list(mapping) if mapping else df.columns, str(p),
                          "columns" if mapping else "path")
        return df
