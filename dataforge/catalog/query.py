"""Read-only access to the catalog: listing, showing, history, and user SQL that cannot write."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from dataforge.catalog import migrations
from dataforge.catalog.db import check_catalog_file, connect, is_file_access_error
from dataforge.catalog.store import output_table
from dataforge.errors import UserError
from dataforge.hashing import Hashed
from dataforge.sqlquote import quote_ident

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl


def _small_frame(rel: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """A metadata query's few rows as a polars frame, built from Python values where every column is
    of a plain type: `.pl()` goes through Arrow, and importing pyarrow costs `dataforge ls` ~0.2 s."""
    plain = {"VARCHAR": pl.Utf8, "BIGINT": pl.Int64, "INTEGER": pl.Int32, "DOUBLE": pl.Float64,
             "BOOLEAN": pl.Boolean, "TIMESTAMP": pl.Datetime("us")}
    types = [str(t) for t in rel.types]
    if not all(t in plain for t in types) or len(set(rel.columns)) != len(rel.columns):
        return rel.pl()
    schema = {c: plain[t] for c, t in zip(rel.columns, types)}
    return pl.DataFrame(rel.fetchall(), schema=schema, orient="row")


# Statement types a read-only query may contain.
_READ_TYPES = {"SELECT", "EXPLAIN", "PRAGMA", "SET", "VARIABLE_SET"}


def _require(path: Path | None) -> Path:
    if path is None or not Path(path).exists():
        raise UserError(f"no catalog at {path}; run `dataforge build RECIPE` first")
    check_catalog_file(Path(path))
    with connect(Path(path), read_only=True) as con:
        if not migrations.recorded(con):
            raise UserError(f"{path} is a DuckDB database but not a dataforge catalog (it has no dataforge "
                            "tables); give the catalog's file, or a new path to create one with `dataforge build`")
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
        if kind == "LOAD":  # DuckDB's statement type for INSTALL too
            kind = "INSTALL/LOAD"
        if kind not in _READ_TYPES:
            raise UserError(f"`dataforge sql` is read-only: {kind} statements are refused "
                            "(datasets change only through `dataforge build`)")
    if len(statements) > 1:
        raise UserError(f"one SQL statement at a time: this query has {len(statements)} "
                        "(separated by `;`); run them one by one")


_MISSING_TABLE = re.compile(r"Table with name (\"[^\"]*\"|\S+) does not exist!")
_DUCKDB_GUESS = re.compile(r"\s*Did you mean \"[^\"]*\"\?")


def catalog_names(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """The catalog's own tables (builds, steps, ...) and its datasets' views: what a query may name,
    without DuckDB's built-in catalog (pg_*, duckdb_*, information_schema) or the step storage tables."""
    tables = [r[0] for r in con.execute(
        "select table_name from duckdb_tables() where schema_name = 'main' and database_name = current_database() "
        "and not starts_with(table_name, '_') order by 1").fetchall()]
    views = [r[0] for r in con.execute(
        "select view_name from duckdb_views() where not internal and schema_name = 'main' "
        "and database_name = current_database() order by 1").fetchall()]
    return tables, views


def _missing_table_hint(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """`Did you mean "greetings"?` among the catalog's own names, else the names it has."""
    import difflib

    tables, views = catalog_names(con)
    by_lower = {n.lower(): n for n in [*views, *tables]}
    close = [by_lower[n] for n in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.75)]
    if close:
        return "Did you mean " + " or ".join(f'"{n}"' for n in close) + "?"
    shown = ", ".join(views[:20]) + (f" and {len(views) - 20:,} more (`dataforge ls`)" if len(views) > 20 else "")
    return (f"The catalog's tables: {', '.join(tables)}; its datasets: {shown or '(none yet)'}")


def _sql_error(e: duckdb.Error, allow_files: bool, con: duckdb.DuckDBPyConnection | None = None) -> UserError:
    text = str(e).strip()
    missing = _MISSING_TABLE.search(text) if isinstance(e, duckdb.CatalogException) else None
    if missing and con is not None:
        # DuckDB guesses among every name it knows, its own catalog included ("lineage or pg_enum"):
        # name only what this catalog holds.
        try:
            hint = _missing_table_hint(con, missing.group(1).strip('"'))
        except duckdb.Error:
            hint = None
        if hint is not None:
            text = _DUCKDB_GUESS.sub("", text) + "\n" + hint
    if is_file_access_error(e) and not allow_files:
        return UserError(f"SQL error: reading files is turned off in catalog queries ({text.split(': ', 1)[-1]}); "
                         "read files through a source step, or pass --allow-files to `dataforge sql`")
    # DuckDB prefixes messages with its exception class ("Binder Error: ..."): say it plainly.
    for prefix in ("Binder Error: ", "Catalog Error: ", "Parser Error: ", "Conversion Error: ",
                   "Invalid Input Error: ", "Out of Range Error: ", "Not implemented Error: "):
        text = text.replace(prefix, "")
    return UserError(f"SQL error: {text}")


def run_select(path: Path | None, query: str, *, allow_files: bool = False,
               files_from: Path | None = None) -> pl.DataFrame:
    """Run one read-only statement over the catalog (external file access off unless `allow_files`;
    relative file paths resolve against `files_from` when given)."""
    return run_select_page(path, query, None, allow_files=allow_files, files_from=files_from)[0]


def run_select_page(path: Path | None, query: str, limit: int | None, *, allow_files: bool = False,
                    files_from: Path | None = None) -> tuple[pl.DataFrame, int]:
    """The first `limit` rows (all when None) of one read-only statement, and how many rows it has in all."""
    check_read_only(query)
    is_select = duckdb.extract_statements(query)[0].type.name == "SELECT"
    with connect(_require(path), read_only=True, allow_files=allow_files) as con:
        if files_from is not None and allow_files:  # the configuration is locked otherwise
            con.execute("set file_search_path = ?", [str(files_from)])
        try:
            rel = con.sql(query)
            if rel is None:
                return pl.DataFrame(), 0
            if limit is None or not is_select:
                df = rel.pl()
                return (df if limit is None else df.head(limit)), df.height
            total = rel.aggregate("count(*)").fetchall()[0][0]
            return rel.limit(limit).pl(), int(total)
        except duckdb.Error as e:
            raise _sql_error(e, allow_files, con) from None


def describe(path: Path | None, query: str, *, allow_files: bool = False) -> list[str]:
    """Column names of a read-only statement's result, without running it over the data."""
    check_read_only(query)
    with connect(_require(path), read_only=True, allow_files=allow_files) as con:
        try:
            return [d[0] for d in con.sql(query).limit(0).description]
        except duckdb.Error as e:
            raise _sql_error(e, allow_files, con) from None


def list_datasets(path: Path | None) -> pl.DataFrame:
    with connect(_require(path), read_only=True) as con:
        return _small_frame(con.sql(
            """select d.name, d.version as latest_version, count(*) over (partition by d.name) as versions,
                      d.rows, d.step_id, d.build_id, d.created_at
               from datasets d
               qualify d.version = max(d.version) over (partition by d.name)
               order by d.name"""
        ))


def dataset_table(path: Path | None, name: str, version: int | None = None) -> tuple[str, int]:
    with connect(_require(path), read_only=True) as con:
        if version is None:
            row = con.execute("select fingerprint, version from datasets where name = ? order by version desc limit 1",
                              [name]).fetchone()
        else:
            row = con.execute("select fingerprint, version from datasets where name = ? and version = ?",
                              [name, version]).fetchone()
        if row is None:
            versions = [r[0] for r in con.execute("select version from datasets where name = ? order by 1",
                                                  [name]).fetchall()]
            if versions:
                raise UserError(f"no dataset {name!r} version {version} in the catalog; "
                                f"its versions: {_ranges(versions)}")
            names = [r[0] for r in con.execute("select distinct name from datasets order by 1").fetchall()]
            raise UserError(f"no dataset {name!r} in the catalog; datasets: {', '.join(names) or '(none)'}")
    return output_table(row[0]), row[1]


def _ranges(versions: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for v in versions:
        if spans and v == spans[-1][1] + 1:
            spans[-1][1] = v
        else:
            spans.append([v, v])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


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


def show(path: Path | None, name: str, version: int | None = None, limit: int | None = 20,
         columns: list[str] | None = None) -> pl.DataFrame:
    """The first `limit` rows (all when None) of a dataset version, optionally only some `columns`."""
    table, v = dataset_table(path, name, version)
    with connect(_require(path), read_only=True) as con:
        have = con.sql(f"select * from {quote_ident(table)}").columns
        if columns:
            missing = [c for c in columns if c not in have]
            if missing:
                raise UserError(f"--columns: {', '.join(map(repr, missing))} not in {name} v{v}; "
                                f"its columns: {', '.join(have)}")
        picked = ", ".join(map(quote_ident, columns)) if columns else "*"
        cap = f" limit {int(limit)}" if limit is not None else ""
        return con.sql(f"select {picked} from {quote_ident(table)}{cap}").pl()


def history(path: Path | None, limit: int = 20, *, build_id: str | None = None,
            recipe: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Recent builds (newest first), optionally one build or one recipe's, and their steps."""
    where, params = [], []
    if build_id is not None:
        where.append("build_id = ?")
        params.append(build_id)
    if recipe is not None:
        where.append("recipe_name = ?")
        params.append(recipe)
    cond = f"where {' and '.join(where)}" if where else ""
    picked = f"select build_id, started_at from builds {cond} order by started_at desc limit ?"
    with connect(_require(path), read_only=True) as con:
        builds = _small_frame(con.sql(
            f"""select build_id, recipe_name, status, started_at,
                      round(epoch(finished_at - started_at), 2) as seconds, error
               from builds where build_id in (select build_id from ({picked}))
               order by started_at desc""", params=[*params, limit]))
        steps = _small_frame(con.sql(
            f"""select s.build_id, s.step_id, s.type, s.status, s.rows_in, s.rows_out, s.rejected,
                      round(s.seconds, 3) as seconds, s.fingerprint
               from steps s join ({picked}) b using (build_id)
               order by b.started_at desc, s.rowid""", params=[*params, limit]))
        if builds.height == 0 and where:
            what = " and ".join(f"{k} {v!r}" for k, v in (("build", build_id), ("recipe", recipe)) if v is not None)
            known = con.execute("select distinct recipe_name from builds order by 1").fetchall()
            hint = f"; recipes with builds: {', '.join(r[0] for r in known)}" if recipe is not None and known else ""
            raise UserError(f"no builds for {what} in the catalog{hint}")
    return builds, steps


def calls_summary(path: Path | None, build_id: str | None = None) -> pl.DataFrame:
    """LLM calls per build, step and model: requests sent, answered from the log, retries, failures,
    tokens, dollars and mean latency of successful calls."""
    with connect(_require(path), read_only=True) as con:
        if build_id and not con.execute("select 1 from builds where build_id = ?", [build_id]).fetchall():
            recent = [r[0] for r in con.execute("select build_id from builds order by started_at desc limit 3").fetchall()]
            raise UserError(f"no build {build_id!r} in the catalog" + (f"; recent builds: {', '.join(recent)} "
                                                                      "(dataforge history lists them)" if recent else ""))
        where = "where build_id = ?" if build_id else ""
        return _small_frame(con.sql(
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
            params=[build_id] if build_id else None))


def kept_work(path: Path | None, pid: int) -> dict[str, Any] | None:
    """What the latest build run by process `pid` stored before it stopped: its id, status, the
    steps it built (their outputs are reused by the next build) and their rows, and the LLM answers
    it logged (`answers`, which the next build takes from the log). None if no such build."""
    if path is None or not Path(path).exists():
        return None
    with connect(Path(path), read_only=True) as con:
        row = con.execute("select build_id, status from builds where pid = ? order by started_at desc limit 1",
                          [pid]).fetchone()
        if row is None:
            return None
        built = con.execute("select count(*), coalesce(sum(rows_out), 0) from steps "
                            "where build_id = ? and status = 'built'", [row[0]]).fetchone()
        answers = con.execute("select count(distinct request_hash) from llm_calls where build_id = ? "
                              "and status = 'ok'", [row[0]]).fetchone()[0]
    return {"build_id": row[0], "status": row[1], "steps_built": int(built[0]), "rows": int(built[1]),
            "answers": int(answers)}


def stored_outputs(path: Path) -> dict[str, str]:
    """fingerprint -> storage table of every step output in the catalog."""
    with connect(_require(path), read_only=True) as con:
        return {} if migrations.pending(con) else _stored_outputs(con)


def _stored_outputs(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select fingerprint, table_name from step_outputs").fetchall())


def planning_state(path: Path) -> tuple[dict[str, str], dict[str, Hashed]]:
    """What planning reads of the catalog, in one connection: `stored_outputs`, and the source
    files' hashes it remembers (absolute path -> `Hashed`)."""
    with connect(_require(path), read_only=True) as con:
        if migrations.pending(con):
            return {}, {}
        tables = _stored_outputs(con)
        rows = con.execute("select path, device, inode, size, mtime_ns, ctime_ns, sha256, hashed_at_ns "
                           "from _file_hashes").fetchall()
    return tables, {r[0]: Hashed(tuple(r[1:6]), r[6], r[7]) for r in rows}  # type: ignore[arg-type]


def rejection_counts(path: Path, reason: str) -> dict[str, int]:
    """fingerprint -> rows its stored output rejected for `reason` (outputs with none are left out)."""
    with connect(_require(path), read_only=True) as con:
        if migrations.pending(con):
            return {}
        return dict(con.execute("select fingerprint, count(*) from rejections where reason = ? group by 1",
                                [reason]).fetchall())


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
        return _small_frame(con.sql(
            f"""select r.run_id, r.kind, r.method, r.status, r.base_model, r.data, r.seed, r.device,
                       l.step as steps, round(l.loss, 4) as last_loss, r.metrics,
                       round(r.wall_seconds, 1) as seconds, r.adapter_path, r.started_at
                from runs r left join (
                    select run_id, step, loss from run_losses where split = 'train'
                    qualify row_number() over (partition by run_id order by rowid desc) = 1) l using (run_id)
                {where} order by r.started_at desc limit ?""",
            params=[*([kind] if kind else []), limit]))


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
