"""Stable row ids: a content hash of every column, independent of column order and library versions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataforge.catalog.store import to_arrow
from dataforge.memdb import cursor
from dataforge.sqlquote import quote_ident
from dataforge.steps.base import ID, PARENT

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl

ID_CHARS = 16


def id_sql(columns: list[str]) -> str:
    """DuckDB SQL of the row id over these columns: md5 of the row's canonical JSON (keys sorted),
    stable across polars/duckdb releases. `content_ids` and sources stored straight from SQL share it."""
    fields = ", ".join(f"{quote_ident(c)} := {quote_ident(c)}" for c in sorted(columns))
    return f"substr(md5(to_json(struct_pack({fields}))), 1, {ID_CHARS})"


def content_ids(df: pl.DataFrame) -> pl.Series:
    """The id each row would get: a hash of all its columns except `id` and `_parent_id`."""
    cols = [c for c in df.columns if c not in (ID, PARENT)]
    if df.height == 0:
        return pl.Series(ID, [], dtype=pl.Utf8)
    if not cols:
        raise ValueError("cannot hash rows with no columns")
    con = cursor()
    try:
        con.register("_t", to_arrow(df.select(cols)))
        out = con.sql(f"select {id_sql(cols)} as id from _t").pl()
    finally:
        con.close()
    return out[ID]


def assign_ids(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Give every row a content-hash `id` (first column); return lineage to any previous id.

    A previous `id` column, or an explicit `_parent_id` (str or list of str), becomes lineage.
    """
    ids = content_ids(df)
    lineage = None
    parent_col = PARENT if PARENT in df.columns else (ID if ID in df.columns else None)
    if parent_col is not None:
        lin = pl.DataFrame({"row_id": ids, "parent_id": df[parent_col]})
        if lin.schema["parent_id"] == pl.List(pl.Utf8):
            lin = lin.explode("parent_id")
        lin = lin.filter(pl.col("parent_id").is_not_null() & (pl.col("parent_id") != pl.col("row_id")))
        lineage = lin.unique(maintain_order=True) if lin.height else None
    rest = df.drop([c for c in (ID, PARENT) if c in df.columns])
    return rest.insert_column(0, ids), lineage
