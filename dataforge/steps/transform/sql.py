"""`transform.sql`: a DuckDB SELECT over the step's inputs, each a table named by its step id.

The query runs on an in-memory DuckDB that sees only the input frames (registered as Arrow,
no copy), single-threaded (the same rows in the same order on every run) and with external
access off (no files, URLs, `ATTACH` or extensions to install). At validation the query is parsed
(one SELECT, nothing that writes) and bound against empty inputs whose columns come from the
plan, so an unknown table or column is reported, located at `query`, before anything runs, and
the output columns are known to the steps downstream. Column types are not known then (every
column is untyped, so it binds to anything): a type error (`sum(text)`) is reported when the
step runs, located the same way. When an input's columns are unknown at planning, only the
parse check runs and the output columns are unknown too.

Row ids (see docs/sql-steps.md): an output row whose `id` is an input row's id keeps it (as many
times as that id occurs in the inputs); every other row gets a new content id, with lineage to
its `id` value when that is an input id, and to the input ids in a `_parent_id` column (a string
or a list of strings) the query builds, e.g. `list(id) as _parent_id` in a group-by.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import duckdb
import polars as pl

from dataforge.sqlquote import quote_ident
from dataforge.steps.base import ID, PARENT, PlanContext, RunContext, Step, StepError, StepResult, \
    rejections_frame

REASON = "sql"
SANDBOX = {"enable_external_access": False, "lock_configuration": True, "threads": 1}


def sandbox() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with external access off and its configuration locked (no `SET` back on)."""
    return duckdb.connect(":memory:", config=dict(SANDBOX))


class SqlTransform(Step):
    """Rows from a DuckDB SELECT over the input steps (filters, joins, group-bys, windows, `qualify`, samples)."""

    type: Literal["transform.sql"]
    query: str
    """One DuckDB SELECT; each step in `from` is a table named by its step id (quote ids with `-`: `"my-step"`).
    Add `repeatable (N)` to a `using sample` clause for the same sample on every run."""
    rejections: bool = False
    """Record the input rows the query does not return as rejections (reason `sql`). Then every output
    row must be an input row (its `id` selected unchanged): a filter, sample, window or `qualify`."""

    kind_version: ClassVar[str] = "1"
    max_inputs: ClassVar[int] = 16

    # -- validation ---------------------------------------------------------------
    def check(self, ctx: PlanContext) -> None:
        if self.from_ is None:
            raise StepError(self.id, None, "transform.sql needs `from`: the step id(s) its query reads, each "
                                           "visible to the query as a table of that name")
        try:
            statements = duckdb.extract_statements(self.query)
        except duckdb.Error as e:
            raise StepError(self.id, "query", _message(e, self.query)) from None
        if len(statements) != 1:
            raise StepError(self.id, "query", f"give exactly one SELECT statement (got {len(statements)})")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise StepError(self.id, "query", f"only a SELECT may run here, not {kind.name.lower()}: "
                                              "a transform.sql step reads its inputs and writes nothing")

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        if any(cols is None for cols in inputs):
            return None  # checked (and its columns known) when it runs
        con = sandbox()
        try:
            for name, cols in zip(self.inputs(), inputs):
                names = [ID, *(c for c in cols if c != ID)]  # type: ignore[union-attr]
                con.execute(f"create view {quote_ident(name)} as select "
                            + ", ".join(f"NULL as {quote_ident(c)}" for c in names) + " where false")
            columns = self._describe(con)
        finally:
            con.close()
        return [c for c in columns if c not in (ID, PARENT)]

    def _describe(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        try:
            columns = con.sql(self.query).columns
        except duckdb.Error as e:
            raise StepError(self.id, "query", self._bind_message(e)) from None
        seen: set[str] = set()
        twice = [c for c in columns if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
        if twice:
            raise StepError(self.id, "query", f"the query returns column {twice[0]!r} twice (a `select *` over a "
                                              "join?); alias one, or select the columns you want")
        if not [c for c in columns if c not in (ID, PARENT)]:
            raise StepError(self.id, "query", "the query returns no columns besides `id` / `_parent_id`")
        return columns

    def _bind_message(self, e: duckdb.Error) -> str:
        text = _message(e, self.query)
        m = re.search(r"Table with name (\S+) does not exist", str(e))
        if m:
            return (f"the query reads table {m.group(1)!r}, which is not one of its inputs; it sees "
                    f"{', '.join(self.inputs())} (the steps in `from`). Catalog datasets are read with source.sql")
        return text

    def expected_rows(self, rows_in: int, rejected: int) -> int | None:
        # With `rejections`, every input row is returned once or rejected; otherwise the query decides.
        return rows_in - rejected if self.rejections else None

    # -- running ------------------------------------------------------------------------
    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        from dataforge.catalog.store import to_arrow

        con = sandbox()
        try:
            for name, df in zip(ctx.input_ids, inputs):
                con.register(name, to_arrow(df))
            self._describe(con)
            try:
                out = con.sql(self.query).pl()
            except duckdb.Error as e:
                raise StepError(self.id, "query", self._bind_message(e)) from None
        finally:
            con.close()
        return self._rows(out, inputs)

    def _rows(self, out: pl.DataFrame, inputs: list[pl.DataFrame]) -> StepResult:
        from dataforge.rows import content_ids

        in_ids = pl.concat([df.select(pl.col(ID).cast(pl.Utf8)) for df in inputs])
        in_count = in_ids.group_by(ID).len("_n")
        n = out.height
        if ID in out.columns:
            claimed = (out.select(pl.col(ID).cast(pl.Utf8))
                       .with_columns(pl.int_range(pl.len()).over(ID).alias("_occ"))
                       .join(in_count, on=ID, how="left", maintain_order="left"))
            given = claimed[ID]
            is_input = claimed["_n"].is_not_null()
            kept = is_input & (claimed["_occ"] < claimed["_n"].fill_null(0))
        else:
            given = pl.Series(ID, [None] * n, dtype=pl.Utf8)
            is_input = kept = pl.Series([False] * n, dtype=pl.Boolean)
        body = out.drop([c for c in (ID, PARENT) if c in out.columns])
        new = ~kept
        if self.rejections and new.any():
            raise StepError(self.id, "rejections", f"with `rejections: true` every output row must be an input "
                            f"row with its `id`; the query made {int(new.sum()):,} new row(s) (no input `id`, or "
                            "an input row returned twice). Select `id` unchanged, or drop `rejections`")
        ids = pl.Series(ID, [None] * n, dtype=pl.Utf8) if not new.any() else content_ids(body)
        final = pl.select(pl.when(kept).then(given).otherwise(ids).alias(ID)).to_series() if n else given
        df = body.insert_column(0, final)

        lineage = self._lineage(final, given, is_input & new, out, in_count[ID])
        rejections = None
        notes: dict[str, Any] = {}
        if self.rejections:
            left = in_count.join(pl.DataFrame({ID: given.filter(kept)}).group_by(ID).len("_k"), on=ID, how="left")
            gone = left.with_columns((pl.col("_n") - pl.col("_k").fill_null(0)).alias("_r")).filter(pl.col("_r") > 0)
            row_ids = gone.select(pl.col(ID).repeat_by("_r").explode())[ID].to_list() if gone.height else []
            rejections = rejections_frame(row_ids, REASON, detail=["not returned by the query"] * len(row_ids))
        n_new = int(new.sum())
        if n_new:
            traced = 0 if lineage is None else lineage["row_id"].n_unique()
            notes["new rows"] = (f"{n_new:,} row(s) got new content ids, {traced:,} with lineage"
                                 + ("" if traced else "; select `list(id) as _parent_id` to trace them"))
        return StepResult(df=df, rejections=rejections, lineage=lineage, notes=notes)

    def _lineage(self, final: pl.Series, given: pl.Series, from_id: pl.Series, out: pl.DataFrame,
                 known: pl.Series) -> pl.DataFrame | None:
        parts = [pl.DataFrame({"row_id": final.filter(from_id), "parent_id": given.filter(from_id)})]
        if PARENT in out.columns:
            parent = out[PARENT]
            if isinstance(parent.dtype, pl.List):
                parent = parent.cast(pl.List(pl.Utf8))
                lin = pl.DataFrame({"row_id": final, "parent_id": parent}).explode("parent_id")
            else:
                try:
                    parent = parent.cast(pl.Utf8)
                except pl.exceptions.InvalidOperationError:
                    raise StepError(self.id, "query", f"`_parent_id` must be an id or a list of ids, not "
                                                      f"{parent.dtype}") from None
                lin = pl.DataFrame({"row_id": final, "parent_id": parent})
            parts.append(lin)
        lin = pl.concat(parts).filter(pl.col("parent_id").is_in(known.implode())
                                      & (pl.col("parent_id") != pl.col("row_id")))
        return lin.unique(maintain_order=True) if lin.height else None


def _message(e: Exception, query: str) -> str:
    """DuckDB's message, one line, with the query line it points at (`LINE n:` in DuckDB's text)."""
    text = str(e)
    head = text.splitlines()[0] if text else type(e).__name__
    m = re.search(r"LINE (\d+):", text)
    if m and "\n" in query.strip():
        n = int(m.group(1))
        lines = query.splitlines()
        if 0 < n <= len(lines):
            head += f" (query line {n}: {lines[n - 1].strip()!r})"
    return head
