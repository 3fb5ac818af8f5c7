"""`source.inline`: rows written in the recipe itself."""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import Field

from dataforge.steps.base import PlanContext
from dataforge.steps.sources.base import Source


class InlineSource(Source):
    """Rows written in the recipe itself."""

    type: Literal["source.inline"]
    rows: list[dict[str, Any]] = Field(min_length=0)
    """The rows, as a list of mappings."""

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        return pl.DataFrame(self.rows, infer_schema_length=None) if self.rows else pl.DataFrame()
