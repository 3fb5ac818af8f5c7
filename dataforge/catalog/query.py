"""Read-only access to the catalog: listing, showing, history, and user SQL that cannot write."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from dataforge.catalog import migrations
from dataforge.catalog.db import connect
from dataforge.catalog.store import output_table, quote_ident
from dataforge.errors import UserError

# Statement types a read-only query may contain.
_READ_TYPES = {"SELECT", "EXPLAIN", "PRAGMA", "SET", "VARIABLE_SET"}


def _require(path: Path | None) -> Path:
    if path is None or not Path(path).exists():
        raise UserError(f"no catalog at {path}; run `dataforge build RECIPE` first")
    return Path(path)


def check_read_only(query: str) -> None:
    """Refuse anything but reads, with a clear error (the connection is read-only as well)."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise UserError(f"SQL syntax error: {str(e).splitlines()[0]}") from None
    if not statements:
        raise UserError("empty SQL query")
    for st in statements:
        kind = st.type.name
        if kind not in _READ_TYPES:
            raise UserError(f"`dataforge sql` is read-only: {kind} statements are refused "
                            "(datasets change only through `dataforge build`)")


def run_select(path: Path | None, query: str, *, allow_files: bool = False) -> pl.DataFrame:
    """Run a read-only query and return its last statement's result.

    DuckDB's access to files outside the catalog (`read_csv`, `glob`, ...) is off unless `allow_files`.
    """
    check_read_only(query)
    with connect(_require(path), read_only=True, allow_files=allow_files) as con:
        statements = duckdb.extract_statements(query)
        for st in statements[:-1]:
            con.execute(st)
        try:
            rel = con.sql(statements[-1].query)
        except duckdb.Error as e:
            raise UserError(f"SQL error: {str(e).strip()}") from None
        if rel is None:
            return pl.DataFrame()
        return rel.pl()


def describe(path: Path | None, query: str, *, allow_files: bool = False) -> list[str]:
    check_read_only(query)
    with connect(_require(path), read_only=True, allow_files=allow_files) as con:
        return [d[0] for d in con.sql(query).limit(0).description]


def list_datasets(path: Path | None) -> pl.DataFrame:
    with connect(_require(path), read_only=True) as con:
        return con.sql(
            """select d.name, d.version as latest_version, count(*) over (partition by d.name) as versions,
                      d.rows, d.step_id, d.build_id, d.created_at
               from datasets d
               qualify d.version = max(d.version) over (partition by d.name)
               order by d.name"""
        ).pl()


def dataset_table(path: Path | None, name: str, version: int | None = None) -> tuple[str, int]:
    with connect(_require(path), read_only=True) as con:
        if version is None:
            row = con.execute("select fingerprint, version from datasets where name = ? order by version desc limit 1",
                              [name]).fetchone()
        else:
            row = con.execute("select fingerprint, version from datasets where name = ? and version = ?",
                              [name, version]).fetchone()
        if row is None:
            names = [r[0] for r in con.execute("select distinct name from datasets order by 1").fetchall()]
            what = f"dataset {name!r}" + (f" version {version}" if version is not None else "")
            raise UserError(f"no {what} in the catalog; datasets: {', '.join(names) or '(none)'}")
    return output_table(row[0]), row[1]


def dataset_record(path: Path | None, name: str, version: int | None = None) -> dict[str, Any]:
    """One dataset version's catalog row (latest unless `version`) plus its storage `table`."""
    table, v = dataset_table(path, name, version)
    with connect(_require(path), read_only=True) as con:
        row = con.execute("select name, version, build_id, step_id, fingerprint, rows, created_at "
                          "from datasets where name = ? and version = ?", [name, v]).fetchone()
    keys = ("name", "version", "build_id", "step_id", "fingerprint", "rows", "created_at")
    return {**dict(zip(keys, row)), "table": table}


def read_dataset(path: Path | None, name: str, version: int | None = None) -> pl.DataFrame:
    """Every row of one dataset version (latest unless `version`), read-only."""
    table, _ = dataset_table(path, name, version)
    with connect(_require(path), read_only=True) as con:
        return con.sql(f"select * from {quote_ident(table)}").pl()


def show(path: Path | None, name: str, version: int | None = None, limit: int = 20) -> pl.DataFrame:
    table, _ = dataset_table(path, name, version)
    with connect(_require(path), read_only=True) as con:
        return con.sql(f"select * from {quote_ident(table)} limit {int(limit)}").pl()


def history(path: Path | None, limit: int = 20) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Recent builds, and their steps."""
    with connect(_require(path), read_only=True) as con:
        builds = con.sql(
            """select build_id, recipe_name, status, started_at,
                      round(epoch(finished_at - started_at), 2) as seconds, error
               from builds order by started_at desc limit ?""", params=[limit]).pl()
        steps = con.sql(
            """select s.build_id, s.step_id, s.type, s.status, s.rows_in, s.rows_out, s.rejected,
                      round(s.seconds, 3) as seconds, s.fingerprint
               from steps s join (select build_id from builds order by started_at desc limit ?) b
               using (build_id) order by s.build_id desc, s.rowid""", params=[limit]).pl()
    return builds, steps


def calls_summary(path: Path | None, build_id: str | None = None) -> pl.DataFrame:
    """LLM calls per build, step and model: requests sent, answered from the log, retries, failures,
    tokens, dollars and mean latency of successful calls."""
    with connect(_require(path), read_only=True) as con:
        where = "where build_id = ?" if build_id else ""
        return con.sql(
            f"""select build_id, step_id, provider || ':' || model as model,
                       count(*) filter (where status = 'ok')::bigint as ok,
                       count(*) filter (where status = 'cached')::bigint as cached,
                       count(*) filter (where status = 'retry')::bigint as retried,
                       count(*) filter (where status = 'error')::bigint as failed,
                       sum(input_tokens)::bigint as input_tokens, sum(output_tokens)::bigint as output_tokens,
                       round(sum(cost_usd), 6) as cost_usd,
                       round(avg(latency_ms) filter (where status = 'ok'), 1) as avg_latency_ms
                from llm_calls {where}
                group by all order by min(created_at), step_id, model""",
            params=[build_id] if build_id else None).pl()


def stored_outputs(path: Path) -> dict[str, str]:
    """fingerprint -> storage table of every step output in the catalog."""
    with connect(_require(path), read_only=True) as con:
        if migrations.pending(con):
            return {}
        return dict(con.execute("select fingerprint, table_name from step_outputs").fetchall())


def output_columns(path: Path, table: str) -> list[str]:
    """Column names of a stored step output."""
    with connect(_require(path), read_only=True) as con:
        return [d[0] for d in con.sql(f"select * from {quote_ident(table)}").limit(0).description]


def read_state(path: Path | None, query: str) -> str:
    """A hash of what `query` reads: each catalog dataset it names at its latest version, and the
    content of each other catalog table it names. A build that changes neither leaves it unchanged."""
    check_read_only(query)
    try:
        names: list[str] | None = sorted(duckdb.get_table_names(query))
    except duckdb.Error:  # DuckDB binds some queries (e.g. `join ... using`) to name their tables
        names = None
    if path is None or not Path(path).exists():
        return hashlib.sha256(repr(("empty", names)).encode()).hexdigest()
    state: list[Any] = []
    with connect(Path(path), read_only=True) as con:
        latest = dict(con.execute("select name, fingerprint from datasets "
                                  "qualify version = max(version) over (partition by name)").fetchall()) \
            if not migrations.pending(con) else {}
        tables = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
        for name in names if names is not None else sorted(latest):  # unknown: every dataset
            if name in latest:
                state.append((name, "dataset", latest[name]))
            elif name in tables:
                digest = con.execute(f"select md5(coalesce(string_agg(t::varchar, chr(30) order by rowid), '')) "
                                     f"from {quote_ident(name)} t").fetchone()[0]
                state.append((name, "table", digest))
            else:
                state.append((name, "missing", None))
    return hashlib.sha256(repr(state).encode()).hexdigest()


def _has_runs(con: duckdb.DuckDBPyConnection) -> bool:
    return "m006_runs" not in migrations.pending(con)


def list_runs(path: Path | None, limit: int = 50, kind: str | None = None) -> pl.DataFrame:
    """Recent runs, newest first: status, method, base model, data, last train loss, metrics, wall time."""
    with connect(_require(path), read_only=True) as con:
        if not _has_runs(con):
            return pl.DataFrame(schema={"run_id": pl.Utf8})
        where = "where r.kind = ?" if kind else ""
        return con.sql(
            f"""select r.run_id, r.kind, r.method, r.status, r.base_model, r.data, r.seed, r.device,
                       l.step as steps, round(l.loss, 4) as last_loss, r.metrics,
                       round(r.wall_seconds, 1) as seconds, r.adapter_path, r.started_at
                from runs r left join (
                    select run_id, step, loss from run_losses where split = 'train'
                    qualify row_number() over (partition by run_id order by rowid desc) = 1) l using (run_id)
                {where} order by r.started_at desc limit ?""",
            params=[*([kind] if kind else []), limit]).pl()


def run_record(path: Path | None, run_id: str) -> dict[str, Any]:
    """Everything stored about one run: its `runs` row (JSON columns decoded) and `losses` (a frame)."""
    import json

    with connect(_require(path), read_only=True) as con:
        if not _has_runs(con):
            raise UserError(f"no run {run_id!r}: the catalog {path} has no runs yet")
        df = con.sql("select * from runs where run_id = ?", params=[run_id]).pl()
        if df.height == 0:
            recent = [r[0] for r in con.execute("select run_id from runs order by started_at desc limit 5").fetchall()]
            raise UserError(f"no run {run_id!r} in {path}; recent runs: {', '.join(recent) or '(none)'}")
        losses = con.sql("select stage, split, step, loss, learning_rate, tokens, seconds from run_losses "
                         "where run_id = ? order by rowid", params=[run_id]).pl()
    rec = df.to_dicts()[0]
    for k in ("config", "data", "metrics"):
        if rec.get(k) is not None:
            rec[k] = json.loads(rec[k])
    rec["losses"] = losses
    return rec
