"""`source.inline`: rows written in the recipe itself."""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import Field

from dataforge.steps.base import PlanContext
from dataforge.steps.sources.base import Source
from dataforge.steps.sources.checks import check_column_case, exact_integers, too_many_digits


class InlineSource(Source):
    """Rows written in the recipe itself."""

    type: Literal["source.inline"]
    rows: list[dict[str, Any]] = Field(min_length=0)
    """The rows, as a list of mappings."""

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        if not self.rows:
            return pl.DataFrame()
        try:
            df = pl.DataFrame(self.rows, infer_schema_length=None)
        except OverflowError:  # an integer past 128 bits
            raise too_many_digits(self.id, "rows", None, "(over 38 digits)", None, field="rows") from None
        df = exact_integers(self.id, df, "rows", lambda i: None, field="rows")
        mapping = self._mapping()
        check_column_case(self.id, list(mapping) if mapping else df.columns, "rows",
                          "columns" if mapping else "rows")
        return df
