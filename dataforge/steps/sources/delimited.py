"""`source.csv` and `source.tsv`: delimited text with or without a header."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from dataforge.steps.base import ID, PARENT, PlanContext, StepError, StepResult
from dataforge.steps.sources.base import FileSource, SqlLoad, names_one_file, sql_load
from dataforge.steps.sources.checks import check_column_case, exact_integers, first_repeat, too_many_digits

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl


class CsvSource(FileSource):
    """Comma- or tab-separated values."""

    type: Literal["source.csv", "source.tsv"]
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    """Field separator; default `,` for source.csv and a tab for source.tsv."""
    header: bool = True
    """Whether the first line names the columns."""
    names: list[str] | None = None
    """Column names when the file has no header line."""

    @field_validator("names")
    @classmethod
    def _names_once(cls, v: list[str] | None) -> list[str] | None:
        repeat = first_repeat(v or [])
        if repeat is not None:
            raise ValueError(f"{v[repeat[0] - 1]!r} is named twice (entries {repeat[0]} and {repeat[1]})")
        return v
    quote_char: str | None = '"'
    """Quote character; null turns quoting off."""
    infer_types: bool = False
    """Infer numbers and booleans; default keeps every field a string."""

    def _sep(self) -> str:
        return self.delimiter or ("\t" if self.type == "source.tsv" else ",")

    def prepare(self, ctx: PlanContext) -> StepResult | SqlLoad:
        """A header, `columns:` by name, string fields, `"` quotes, no `limit`/`sample`: an `SqlLoad`
        for the build to stream straight from the file (`csv_duckdb`), the whole file checked by one
        DuckDB scan that keeps no rows (by the store itself, for a build); anything else, or a file
        whose shape the two readers might read differently, is read by `load`."""
        from dataforge.steps.sources import csv_duckdb

        mapping = self._mapping()
        sep = self._sep()
        if (mapping and self.limit is None and self.sample is None and ID not in mapping and PARENT not in mapping
                and self.header and self.names is None and not self.infer_types and self.quote_char == '"'
                and sep.isascii() and sep not in '"\r\n' and self.encoding.lower() in ("utf-8", "utf8")):
            p = ctx.resolve(self.path)
            names = csv_duckdb.header(p, sep) if names_one_file(p) else None
            if names is not None and all(src in names for src in mapping.values()) and csv_duckdb.plain_shape(p, sep):
                check_column_case(self.id, list(mapping), str(p), "columns")
                load = sql_load(ctx, p, csv_duckdb.select_sql(p, names, sep, mapping), list(mapping))
                if load is not None:
                    return load
        return self.load(ctx)

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        self._check_header(p)
        df = self._read_file(p) if self.encoding.lower() in ("utf-8", "utf8") else None
        text: str | None = None
        if df is None:
            text = self._text(ctx)
            if not text.strip():
                return pl.DataFrame(schema={c: pl.Utf8 for c in self.names or []})
            try:
                df = self._parse(text.encode())
            except pl.exceptions.PolarsError as e:
                raise self._parse_error(p, text, e) from None

        def line_of(i: int) -> int:  # only for an error: read the text then
            return _row_lines(text if text is not None else self._text(ctx), self._sep(), self.quote_char,
                              self.header)[i]

        df = exact_integers(self.id, df, str(p), line_of)
        mapping = self._mapping()
        check_column_case(self.id, list(mapping) if mapping else df.columns, str(p),
                          "columns" if mapping else "path")
        return df

    def _check_header(self, p: Path) -> None:
        """Refuse a header line that names a column twice (polars would call the second one
        `name_duplicated_0`, a column the file does not have)."""
        if not self.header or self.names is not None:
            return
        with open(p, "rb") as fh:
            head = fh.read(1 << 20)
        try:
            text = head.decode(self._codec(), errors="replace")
        except LookupError:
            return  # an unknown encoding: the text path names it
        try:
            line, fields = next(_rows(text, self._sep(), self.quote_char), (1, []))
        except csv.Error:  # e.g. a lone carriage return: the parser says what it makes of the file
            return
        repeat = first_repeat(fields)
        if repeat is not None:
            raise StepError(self.id, "path", f"{p}:{line}: the header names column {fields[repeat[0] - 1]!r} twice "
                            f"(fields {repeat[0]} and {repeat[1]}); rename one of them in the file")

    def _parse(self, source) -> pl.DataFrame:
        return pl.read_csv(source, separator=self._sep(), has_header=self.header, new_columns=self.names,
                           quote_char=self.quote_char, infer_schema=self.infer_types, infer_schema_length=10000,
                           glob=False)

    def _read_file(self, p: Path) -> pl.DataFrame | None:
        """The file parsed by polars straight from disk (memory-mapped, multi-threaded; it checks UTF-8
        and drops a BOM as the text path does), or None to take the text path, which names bad lines."""
        with open(p, "rb") as fh:
            if not fh.read(1 << 16).strip():
                return None  # empty or blank so far: the text path knows what an empty file means
        try:
            return self._parse(p)
        except pl.exceptions.PolarsError:
            return None

    def _parse_error(self, p, text: str, e: Exception) -> StepError:
        """Say which line is wrong: a row with more fields than the header, or a value that fits no type."""
        msg = str(e).splitlines()[0]
        width = len(self.names) if self.names else None
        for line, fields in _rows(text, self._sep(), self.quote_char):
            if width is None:
                width = len(fields)
                if self.header:
                    continue
            if len(fields) > width:
                return StepError(self.id, "path", f"{p}:{line}: {len(fields)} fields where the "
                                 f"{'header has' if self.header and not self.names else 'columns are'} {width}"
                                 " (an unquoted delimiter in a value?)")
        m = re.search(r"could not parse `([^`]*)` as dtype `([^`]*)`", str(e))
        if m and m.group(2) in ("str", "String") and self.quote_char:
            # Every field is text, so no type failed: a field opened a quote and went on past its close.
            value = m.group(1)
            first = value.split("\n", 1)[0]
            sep = self._sep()
            line = next((n for n, ln in enumerate(text.split("\n"), 1)  # where a field starts so
                         if ln.startswith(first) or sep + first in ln), None)
            at = f"{p}:{line}" if line else str(p)
            what = ("opens a quote that is never closed" if value.count(self.quote_char) % 2
                    else "goes on after its closing quote")
            return StepError(self.id, "path", f"{at}: field {value[:40]!r} starts with the quote character "
                             f"{self.quote_char!r} but {what}; quote the whole field (doubling the quotes "
                             "inside it), or set quote_char: null to read quotes as text")
        if m:
            value = m.group(1)
            line = next((ln for ln, fields in _rows(text, self._sep(), self.quote_char) if value in fields), None)
            if re.fullmatch(r"[-+]?\d+", value):
                return too_many_digits(self.id, str(p), None, value, line,
                                       hint="set infer_types: false to keep every field as text")
            at = f"{p}:{line}" if line else str(p)
            return StepError(self.id, "path", f"{at}: value {value[:40]!r} does not fit the type inferred for its "
                             "column; set infer_types: false to keep every field as text")
        return StepError(self.id, "path", f"{p}: cannot parse as CSV: {msg}")


def _rows(text: str, sep: str, quote: str | None):
    """(first line number, fields) of each non-blank row, honouring quotes that span lines."""
    reader = csv.reader(io.StringIO(text), delimiter=sep, quotechar=quote or '"',
                        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE)
    start = 1
    for fields in reader:
        if fields:
            yield start, fields
        start = reader.line_num + 1


def _row_lines(text: str, sep: str, quote: str | None, header: bool) -> list[int]:
    """Line number of each data row (row index -> line), for errors only."""
    lines = [ln for ln, _ in _rows(text, sep, quote)]
    return lines[1:] if header else lines
