"""What every source shares: column selection/renaming, limit, seeded sample; file sources' path and encoding."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from dataforge.sqlquote import quote_ident
from dataforge.steps.base import PlanContext, RunContext, Step, StepError, StepResult

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl


def _line_of_offset(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


MAX_ROWS = 2**62
"""Upper bound of `limit` and of an integer `sample` (anything larger means every row)."""


@dataclass(frozen=True)
class SqlLoad:
    """A source whose rows the build stores straight from the file, planning having kept none.

    `validate` and `--dry-run` run every check of `select` over the whole file; a build skips that
    scan and has the catalog run `query()` (the same checks, ids computed in SQL) into the step's
    table before its first step runs. Where the query stops, `Source.load` (the careful reader)
    reads the file instead: it names the bad line, or keeps rows the fast checks were unsure of."""

    select: str
    """A DuckDB SELECT of the output `columns`, in order, that raises on any value the careful reader
    would refuse or read differently (each kind's module names the leniencies left)."""
    columns: list[str]
    rows: int | None
    """How many rows the planning scan counted; None when planning was for a build (no scan)."""
    size: int = 0
    """Bytes of input the query reads (for the build's progress)."""

    def query(self) -> str:
        """`select` with the row id (the content hash `dataforge.rows` gives) as its first column."""
        from dataforge.rows import id_sql

        return f"SELECT {id_sql(self.columns)} AS id, * FROM ({self.select})"


def names_one_file(path: Path) -> bool:
    """Whether DuckDB's readers take `path` as the one file it names. They read a path holding `*`,
    `?` or `[` as a glob pattern (`a[1].csv` would read `a1.csv`, `x?.jsonl` every `x*.jsonl` of one
    more letter), so a source at such a path skips the DuckDB fast paths; its careful reader reads
    it with globbing off."""
    return not any(c in str(path) for c in "*?[")


def sql_load(ctx: PlanContext, path: Path, select: str, columns: list[str]) -> SqlLoad | None:
    """`select` (of `columns`, from the file at `path`) as an `SqlLoad`. For `validate` and `--dry-run`
    after a scan of the whole file that keeps no rows: None when it stops or finds no rows (`load`
    then names the line, or accepts an empty file under allow_empty). A build leaves that to the store."""
    rows = None if ctx.for_build else count_rows(select, columns)
    if ctx.for_build or rows:
        return SqlLoad(select=select, columns=columns, rows=rows, size=path.stat().st_size)
    return None


def count_rows(sql: str, columns: list[str]) -> int | None:
    """Run every check of `sql` (an `SqlLoad.select`) over the whole file, keeping no rows: the number
    of rows, or None when a check or the parser stops (the careful reader then names the line).

    Each of `columns` has its values hashed so that DuckDB cannot skip reading (and so checking)
    them: a plain `count(column)` of a Parquet file is answered from its row groups' statistics.
    With no `columns`, only the rows are counted (for Parquet, from those statistics)."""
    import duckdb

    from dataforge.memdb import cursor

    counts = "".join(f", count(hash({quote_ident(c)}))" for c in columns)
    con = cursor()
    try:
        return int(con.sql(f"SELECT count(*){counts} FROM ({sql})").fetchall()[0][0])
    except duckdb.Error:
        return None
    finally:
        con.close()


class Source(Step):
    """Shared options of every source: column selection/renaming, limit, deterministic sample.

    Planning calls `prepare` (the whole file is read and checked before anything runs); the
    executor reuses the rows it kept, or stores an `SqlLoad` straight from the file. A kind
    implements `read` (the raw table) and, for files, the checks that need the file system in `check`.
    """

    columns: dict[str, str] | list[str] | None = None
    """Keep only these columns: a list of names, or a mapping `new_name: source_column`."""
    limit: int | None = Field(default=None, ge=0, le=MAX_ROWS)
    """Keep the first N rows (after reading, before sampling)."""
    sample: int | float | None = Field(default=None, gt=0)
    """Keep a deterministic random sample seeded by the recipe seed: an integer is a row count
    (`sample: 100`), a float a fraction in (0, 1] (`sample: 0.1`; `sample: 1.0` keeps every row)."""
    allow_empty: bool = False
    """Accept a source with no rows instead of failing the build."""

    is_source: ClassVar[bool] = True
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[int] = 0
    new_rows: ClassVar[bool] = True

    @field_validator("sample")
    @classmethod
    def _sample_range(cls, v: int | float | None) -> int | float | None:
        if isinstance(v, float) and v > 1:
            raise ValueError(f"a float sample is a fraction in (0, 1]; for a count of rows write an integer "
                             f"(sample: {int(v)})" if v.is_integer() else "a float sample is a fraction in (0, 1]")
        if isinstance(v, int) and v > MAX_ROWS:
            raise ValueError(f"must be at most {MAX_ROWS}")
        return v

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        """The rows as the source holds them (before `columns`, `limit`, `sample`)."""
        raise NotImplementedError

    def _mapping(self) -> dict[str, str] | None:
        if self.columns is None:
            return None
        if isinstance(self.columns, list):
            return {c: c for c in self.columns}
        return dict(self.columns)

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        mapping = self._mapping()
        return list(mapping) if mapping is not None else None  # planning takes them from `load`

    def _check_mapping(self, raw: list[str]) -> None:
        mapping = self._mapping()
        if mapping is None:
            return
        missing = [src for src in mapping.values() if src not in raw]
        if missing:
            raise StepError(self.id, "columns",
                            f"column(s) {', '.join(map(repr, missing))} not in the source; "
                            f"it has: {', '.join(raw) or '(none)'}")

    def prepare(self, ctx: PlanContext) -> StepResult | SqlLoad:
        """What planning keeps for the build: the rows (`load`), or, where DuckDB can check and store
        the file itself, an `SqlLoad` (checked here unless `ctx.for_build`). Every problem found is a
        `StepError`."""
        return self.load(ctx)

    def load(self, ctx: PlanContext) -> StepResult:
        """Read the source in full and apply `columns`, `limit` and `sample` (`rows_read`: the rows read,
        before the last two); every problem is a `StepError`."""
        try:
            df = self.read(ctx)
        except pl.exceptions.PolarsError as e:  # e.g. one column holding numbers and lists: the data's problem
            where = next((f for f in ("path", "rows", "query") if f in type(self).model_fields), None)
            raise StepError(self.id, where, f"cannot make a table of the rows: {str(e).splitlines()[0]}") from None
        mapping = self._mapping()
        if df.width == 0 and df.height == 0 and self.allow_empty and mapping is not None:
            df = pl.DataFrame(schema={src: pl.Utf8 for src in mapping.values()})  # an empty file has no columns
        self._check_mapping(df.columns)
        if mapping is not None:
            df = df.select([pl.col(src).alias(dst) for dst, src in mapping.items()])
        if "id" in df.columns and (mapping is None or "id" not in mapping):
            if "source_id" in df.columns:
                raise StepError(self.id, "columns", "the data has both `id` and `source_id` columns; `id` is "
                                "dataforge's row id, so pick and rename yours with `columns:`")
            df = df.rename({"id": "source_id"})
        read = df.height
        if self.limit is not None:
            df = df.head(self.limit)
        if self.sample is not None:
            df = _sample(df, self.sample, ctx.seed)
        if df.height == 0 and not self.allow_empty:
            raise StepError(self.id, None, "source produced no rows (set allow_empty: true to accept that)")
        if df.width == 0:
            hint = " (no rows name any: list them in `columns:`)" if self.allow_empty else ""
            raise StepError(self.id, None, f"source has no columns{hint}")
        return StepResult(df=df, rows_read=read)

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        return self.load(ctx)


def _sample(df: pl.DataFrame, sample: int | float, seed: int) -> pl.DataFrame:
    n = sample if isinstance(sample, int) else int(round(df.height * sample))
    if n >= df.height:
        return df
    # Rank rows by a seeded hash of their position: stable across library versions.
    keys = [hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest() for i in range(df.height)]
    order = sorted(range(df.height), key=keys.__getitem__)[:n]
    return df[sorted(order)]


def check_regular_file(step_id: str, p: Path) -> None:
    """Refuse a missing path, a directory, a FIFO or a device (`/dev/zero` would be read forever)."""
    if not p.exists():
        raise StepError(step_id, "path", f"file not found: {p}")
    if p.is_dir():
        raise StepError(step_id, "path", f"{p} is a directory; give the path of a file")
    if not p.is_file():
        raise StepError(step_id, "path", f"{p} is not a regular file (a FIFO, socket or device?); "
                                         "give the path of a file")


class FileSource(Source):
    path: str
    """File to read, relative to the recipe file."""
    encoding: str = "utf-8"
    """Text encoding of the file."""

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        return ctx.file_sha256(ctx.resolve(self.path))

    def check(self, ctx: PlanContext) -> None:
        check_regular_file(self.id, ctx.resolve(self.path))
        super().check(ctx)

    def _codec(self) -> str:
        """The codec that decodes the file: `encoding`, dropping a leading BOM when it is UTF-8."""
        return "utf-8-sig" if self.encoding.lower() in ("utf-8", "utf8") else self.encoding

    def _text(self, ctx: PlanContext) -> str:
        p = ctx.resolve(self.path)
        raw = p.read_bytes()
        codec = self._codec()
        try:
            return raw.decode(codec)
        except UnicodeDecodeError as e:
            start = raw.rfind(b"\n", 0, e.start) + 1  # the column counts the line's characters before the byte
            col = len(raw[start:e.start].decode(codec, errors="replace")) + 1
            raise StepError(self.id, "path", f"{p}:{_line_of_offset(raw, e.start)}:{col}: not valid {self.encoding} "
                            f"(byte 0x{raw[e.start]:02x}, offset {e.start:,} of the file); set `encoding:`") from None
        except LookupError:
            raise StepError(self.id, "encoding", f"unknown encoding {self.encoding!r}") from None
