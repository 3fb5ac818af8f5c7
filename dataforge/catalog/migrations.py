"""Append-only, named schema migrations. Never edit one that has shipped; add a new one."""

from __future__ import annotations

import duckdb

from dataforge.catalog.db import transaction

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "m001_initial",
        [
            """create table builds (
                build_id varchar primary key, recipe_name varchar, recipe_path varchar,
                recipe_sha256 varchar, started_at timestamp, finished_at timestamp,
                status varchar, dataforge_version varchar, error varchar)""",
            """create table steps (
                build_id varchar, step_id varchar, type varchar, fingerprint varchar,
                rows_in bigint, rows_out bigint, rejected bigint, seconds double, status varchar)""",
            """create table step_outputs (
                fingerprint varchar primary key, table_name varchar, step_id varchar, type varchar,
                rows_in bigint, rows bigint, rejected bigint, build_id varchar, created_at timestamp)""",
            """create table datasets (
                name varchar, version integer, build_id varchar, step_id varchar,
                fingerprint varchar, rows bigint, created_at timestamp, primary key (name, version))""",
            """create table rejections (
                build_id varchar, step_id varchar, fingerprint varchar, row_id varchar,
                reason varchar, score double, detail varchar)""",
            """create table llm_calls (
                request_hash varchar, build_id varchar, step_id varchar, provider varchar,
                model varchar, params varchar, prompt varchar, response varchar,
                finish_reason varchar, input_tokens integer, output_tokens integer,
                cost_usd double, latency_ms double, status varchar, error varchar,
                created_at timestamp)""",
            "create index llm_calls_hash on llm_calls (request_hash)",
            """create table lineage (
                row_id varchar, parent_id varchar, step_id varchar, fingerprint varchar)""",
        ],
    ),
    (
        # One row per request submitted through a provider's batch API (OpenAI Batch, Anthropic Message
        # Batches), so a later build resumes polling instead of resubmitting. `request` is the canonical
        # request JSON (never a key); `endpoint` is the server the batch lives on.
        "m002_llm_batches",
        [
            """create table llm_batches (
                batch_id varchar, provider varchar, endpoint varchar, model varchar, build_id varchar,
                step_id varchar, request_hash varchar, custom_id varchar, request varchar, status varchar,
                error varchar, submitted_at timestamp, updated_at timestamp)""",
            "create index llm_batches_hash on llm_batches (request_hash)",
        ],
    ),
    (
        # Which process runs a build, so the next build can mark a `running` build whose process died
        # (SIGKILL, power loss) as `killed`.
        "m003_build_owner",
        [
            "alter table builds add column pid integer",
            "alter table builds add column host varchar",
        ],
    ),
    (
        # The stored DAG (each step's input step ids, so lineage and the report follow a dataset's real
        # ancestors), why a step failed, and what a step had to say about its run (e.g. a generator that
        # stopped at max_rounds).
        "m004_step_inputs_errors_notes",
        [
            "alter table steps add column inputs varchar[]",
            "alter table steps add column error varchar",
            "alter table steps add column notes varchar",
        ],
    ),
    (
        # A batch's items are written before it is submitted (status `submitting`, keyed by `intent`,
        # which also tags the batch at the provider), so a crash before its id is stored is recovered.
        "m005_batch_intents",
        ["alter table llm_batches add column intent varchar"],
    ),
    (
        # Training, ranking and evaluation runs (`dataforge train`, `rank train`, `eval`): enough to
        # repeat one (`config` is the resolved config as JSON) and to compare them. `data` is a JSON list
        # of what was read: {dataset, version, fingerprint} for catalog datasets, {export, manifest_sha256}
        # for export directories. `run_losses` holds the loss curve: one row per logged optimizer step
        # (split `train`) or evaluation (split `validation`); `stage` tells NAT's two stages apart.
        "m006_runs",
        [
            """create table runs (
                run_id varchar primary key, kind varchar, method varchar, status varchar,
                config varchar, config_path varchar, config_sha256 varchar,
                base_model varchar, base_model_sha256 varchar, data varchar,
                metrics varchar, device varchar, seed integer, adapter_path varchar, output_dir varchar,
                started_at timestamp, finished_at timestamp, wall_seconds double,
                dataforge_version varchar, pid integer, host varchar, error varchar, repeat_of varchar)""",
            """create table run_losses (
                run_id varchar, stage varchar, split varchar, step integer, loss double,
                learning_rate double, tokens bigint, seconds double)""",
        ],
    ),
    (
        # What each source file hashed to, by its identity on disk, so that a rebuild need not read an
        # unchanged file again to fingerprint it (`dataforge.hashing.FileHashes` says when it may trust one).
        "m007_file_hashes",
        [
            """create table _file_hashes (
                path varchar primary key, device ubigint, inode ubigint, size ubigint,
                mtime_ns bigint, ctime_ns bigint, sha256 varchar, hashed_at_ns bigint)""",
        ],
    ),
]


def apply(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration not yet recorded in `_migrations`; return the names applied."""
    con.execute("create table if not exists _migrations (name varchar primary key, applied_at timestamp)")
    done = {r[0] for r in con.execute("select name from _migrations").fetchall()}
    applied = []
    for name, statements in MIGRATIONS:
        if name in done:
            continue
        with transaction(con):
            for sql in statements:
                con.execute(sql)
            con.execute("insert into _migrations values (?, now())", [name])
        applied.append(name)
    return applied


def recorded(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the database has our `_migrations` table: a dataforge catalog."""
    return bool(con.execute("select count(*) from duckdb_tables() where table_name = '_migrations'").fetchone()[0])


def foreign(con: duckdb.DuckDBPyConnection) -> bool:
    """True for a DuckDB database of someone else's: tables or views, but no `_migrations` of ours."""
    if recorded(con):
        return False
    return bool(con.execute("select (select count(*) from duckdb_tables() where not internal) + "
                            "(select count(*) from duckdb_views() where not internal)").fetchone()[0])


def pending(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of migrations a read-only connection sees as missing."""
    try:
        done = {r[0] for r in con.execute("select name from _migrations").fetchall()}
    except duckdb.CatalogException:
        done = set()
    return [name for name, _ in MIGRATIONS if name not in done]
