"""`source.csv` and `source.tsv`: delimited text with or without a header."""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import Field

from dataforge.steps.base import PlanContext, StepError
from dataforge.steps.sources.base import FileSource


class CsvSource(FileSource):
    """Comma- or tab-separated values."""

    type: Literal["source.csv", "source.tsv"]
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    """Field separator; default `,` for source.csv and a tab for source.tsv."""
    header: bool = True
    """Whether the first line names the columns."""
    names: list[str] | None = None
    """Column names when the file has no header line."""
    quote_char: str | None = '"'
    """Quote character; null turns quoting off."""
    infer_types: bool = False
    """Infer numbers and booleans; default keeps every field a string."""

    def _sep(self) -> str:
        return self.delimiter or ("\t" if self.type == "source.tsv" else ",")

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        text = self._text(ctx)
        if not text.strip():
            return pl.DataFrame(schema={c: pl.Utf8 for c in self.names or []})
        try:
            df = pl.read_csv(text.encode(), separator=self._sep(), has_header=self.header,
                             new_columns=self.names, quote_char=self.quote_char,
                             infer_schema=self.infer_types, infer_schema_length=10000)
        except pl.exceptions.PolarsError as e:
            raise StepError(self.id, "path", f"{p}: cannot parse as CSV: {str(e).splitlines()[0]}") from None
        return df
