"""`source.parquet`: an Apache Parquet file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from dataforge.sqlquote import quote_ident, quote_literal
from dataforge.steps.base import ID, PARENT, PlanContext, StepResult
from dataforge.steps.sources import arrow_schema
from dataforge.steps.sources.base import FileSource, SqlLoad, count_rows, names_one_file
from dataforge.steps.sources.checks import check_column_case, exact_integers

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl

# Arrow types of Parquet columns that DuckDB reads as exactly the values (and catalog types) the
# polars path gives: rows stored straight from the file get the ids the polars path gives them.
# (Arrow's types, from the file's `ARROW:schema`: DuckDB ignores it, and calls a Duration a BIGINT.)
_PLAIN = {"string", "large_string", "string_view", "int64", "int32", "double", "bool"}


def _fields(path) -> list[tuple[str, bool]] | None:
    """Each top-level column of the file and whether its Arrow type is plain; None when the file's
    schema cannot be read. From the footer's `ARROW:schema` where the writer recorded one (most do),
    else from pyarrow (importing polars would cost twice as long)."""
    recorded = arrow_schema.parquet_fields(path)
    if recorded is not None:
        return [(name, kind is not None) for name, kind in recorded]
    import pyarrow.parquet as pq

    try:
        return [(f.name, _plain(f.type)) for f in pq.read_schema(path)]
    except Exception:
        return None


def _plain(t) -> bool:
    """A plain type, or a dictionary of one (polars' Categorical/Enum: the polars path stores its values)."""
    import pyarrow as pa

    return str(t.value_type if pa.types.is_dictionary(t) else t) in _PLAIN


class ParquetSource(FileSource):
    """An Apache Parquet file."""

    type: Literal["source.parquet"]

    def prepare(self, ctx: PlanContext) -> StepResult | SqlLoad:
        """Columns of plain types, no `limit`/`sample`: an `SqlLoad` for the build to store straight
        from the file (every value checked by one DuckDB scan that keeps no rows, or, for a build, by
        the store itself); else `load`."""
        p = ctx.resolve(self.path)
        fields = _fields(p) if names_one_file(p) else None
        if fields is None:  # not Parquet, truncated, ...: `load` says so
            return self.load(ctx)
        schema = dict(fields)
        if len(schema) != len(fields):  # a name twice: `load` refuses the file
            return self.load(ctx)
        names = self._mapping() or {c: c for c in schema}
        if (self.limit is None and self.sample is None and ID not in names and PARENT not in names
                and all(schema.get(src) for src in names.values())):
            check_column_case(self.id, list(names), str(p), "columns" if self.columns is not None else "path")
            load = _scan(p, names, check=not ctx.for_build)
            if load is not None:
                return load
        return self.load(ctx)

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        mapping = self._mapping()
        wanted = None
        if mapping:  # read only the selected columns when the file has them all (else `load` names the missing)
            try:
                with open(p, "rb") as fh:  # a path holding `*?[` would be a glob pattern to polars
                    have = pl.read_parquet_schema(fh)
            except Exception:
                have = {}
            if all(src in have for src in mapping.values()):
                wanted = list(dict.fromkeys(mapping.values()))
        df = exact_integers(self.id, pl.read_parquet(p, columns=wanted, glob=False), str(p))
        check_column_case(self.id, list(mapping) if mapping else df.columns, str(p),
                          "columns" if mapping else "path")
        return df


def _scan(path, names: dict[str, str], check: bool) -> SqlLoad | None:
    """An `SqlLoad` of `names` (output -> file column), or None when the file has no rows or (with
    `check`: `validate`, `--dry-run`) a full scan of its values fails; the polars path then reads the
    file and says why. A build only counts rows from the row groups' statistics: its store reads
    every value."""
    picked = ", ".join(f"{quote_ident(src)} AS {quote_ident(dst)}" for dst, src in names.items())
    select = f"SELECT {picked} FROM read_parquet({quote_literal(path)}, hive_partitioning = false)"
    rows = count_rows(select, list(names) if check else [])
    return SqlLoad(select=select, columns=list(names), rows=rows, size=path.stat().st_size) if rows else None
