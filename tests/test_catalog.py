"""Catalog tables come from named migrations; their contract columns are present."""

from __future__ import annotations

import duckdb
import pytest

from dataforge.catalog import migrations
from dataforge.catalog.store import Catalog

# The contract columns of each table (other features may append tables and columns).
CONTRACT = {
    "_migrations": ["name", "applied_at"],
    "builds": ["build_id", "recipe_name", "recipe_path", "recipe_sha256", "started_at", "finished_at", "status",
               "dataforge_version", "error", "pid", "host"],
    "steps": ["build_id", "step_id", "type", "fingerprint", "rows_in", "rows_out", "rejected", "seconds", "status"],
    "step_outputs": ["fingerprint", "table_name", "step_id", "type", "rows_in", "rows", "rejected", "build_id",
                     "created_at"],
    "datasets": ["name", "version", "build_id", "step_id", "fingerprint", "rows", "created_at"],
    "rejections": ["build_id", "step_id", "row_id", "reason", "score", "detail"],
    "llm_calls": ["request_hash", "build_id", "step_id", "provider", "model", "params", "prompt", "response",
                  "finish_reason", "input_tokens", "output_tokens", "cost_usd", "latency_ms", "status", "error",
                  "created_at"],
    "lineage": ["row_id", "parent_id", "step_id"],
}


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_name = ? order by ordinal_position",
        [table]).fetchall()]


def test_fresh_catalog_has_every_contract_column(catalog):
    Catalog(catalog)
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        for table, cols in CONTRACT.items():
            have = columns(con, table)
            assert have[: len(cols)] == cols if table in ("datasets", "builds", "steps") else set(cols) <= set(have), \
                (table, have)
        applied = [r[0] for r in con.execute("select name from _migrations order by applied_at, name").fetchall()]
    finally:
        con.close()
    assert applied[0] == "m001_initial"
    assert sorted(applied) == sorted(name for name, _ in migrations.MIGRATIONS)


def test_migrations_are_named_unique_and_applied_once(catalog):
    names = [name for name, _ in migrations.MIGRATIONS]
    assert len(names) == len(set(names))
    Catalog(catalog)
    con = duckdb.connect(str(catalog))
    try:
        assert migrations.apply(con) == []  # nothing left to apply
        assert migrations.pending(con) == []
    finally:
        con.close()


def test_an_old_catalog_is_upgraded_in_place(catalog):
    catalog.parent.mkdir(parents=True)
    con = duckdb.connect(str(catalog))
    try:
        con.execute("create table _migrations (name varchar primary key, applied_at timestamp)")
        for sql in migrations.MIGRATIONS[0][1]:
            con.execute(sql)
        con.execute("insert into _migrations values ('m001_initial', now())")
        con.execute("insert into datasets values ('kept', 1, 'b', 's', 'f', 3, now())")
    finally:
        con.close()
    Catalog(catalog)
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        assert con.execute("select name, rows from datasets").fetchall() == [("kept", 3)]
        assert migrations.pending(con) == []
    finally:
        con.close()


def test_a_file_that_is_not_a_catalog_is_a_user_error(tmp_path, cli, write):
    bad = tmp_path / "notes.duckdb"
    bad.write_text("not a database\n")
    r = write("r.yaml", "name: r\nsteps:\n  - id: s\n    type: source.inline\n    rows: [{a: 1}]\noutputs:\n  o: s\n")
    for args in (("build", r), ("ls",), ("sql", "select 1")):
        res = cli(*args, "--catalog", bad)
        assert res.exit_code == 2, res.output
        assert f"{bad} is not a dataforge catalog (not a DuckDB database file)" in " ".join(res.output.split())
    assert bad.read_text() == "not a database\n"


def test_a_build_opens_the_catalog_between_steps_only_and_lets_go_while_a_step_runs(write, catalog, monkeypatch):
    import dataforge.catalog.store as store
    from dataforge import api
    from dataforge.catalog.query import run_select

    opened: list[bool] = []
    real = store.connect

    def counting(path, *, read_only, **kw):
        opened.append(read_only)
        return real(path, read_only=read_only, **kw)

    monkeypatch.setattr(store, "connect", counting)
    seen: list[int] = []
    import dataforge.steps.transform.template as template

    run = template.TemplateTransform.run

    def run_and_read(self, inputs, ctx):  # while the step runs, another reader gets in
        seen.append(run_select(catalog, "select count(*) n from builds")["n"][0])
        return run(self, inputs, ctx)

    monkeypatch.setattr(template.TemplateTransform, "run", run_and_read)
    r = write("r.yaml", """
        name: held
        steps:
          - id: src
            type: source.inline
            rows: [{text: a, label: 1}, {text: b, label: 0}]
          - id: tpl
            type: transform.template
            templates: {src: [{id: t, prompt: "{{ text }}", target: "{{ label }}"}]}
        outputs: {out: tpl}
        """)
    api.build(r, catalog=catalog)
    assert seen == [1]  # the build's own row is visible to a reader mid-build
    # one connection migrates the catalog and stays held for the work between steps; let go while the
    # template step runs and taken again after it (the inline source's rows were prepared at planning:
    # nothing runs, so the connection stays); all of them read-write
    assert opened == [False, False]


def test_a_source_too_big_for_the_staging_memory_limit_is_stored_without_it(tmp_path, monkeypatch):
    """Sources stream into the catalog under a tight DuckDB memory limit; rows it cannot hold make
    the store run again without one, rather than fail or fall back to reading the file in Python."""
    from dataforge.catalog import store

    monkeypatch.setattr(store, "STAGE_MEMORY_LIMIT", "1MB")
    cat = store.Catalog(tmp_path / "c.duckdb")
    query = "select md5(i::varchar) as id, repeat('x', 10000) || i as text from range(20000) t(i)"
    with cat.held():
        assert cat.stage_output_query("f" * 64, query) == 20_000
        with cat._read() as con:
            assert con.execute("select current_setting('memory_limit')").fetchone()[0] != "1.0 MiB"
            assert con.execute(f"select count(*) from {store.output_table('f' * 64)}").fetchone()[0] == 20_000


def test_catalog_text_is_stored_zstd_compressed(tmp_path):
    """Text columns of stored outputs are zstd-compressed (DuckDB's own per-segment choice costs
    ~0.5 s more per million rows to write); other types keep DuckDB's choice, and a DuckDB that
    ignored the setting (1.2 stores it uncompressed) would fail here."""
    from dataforge.catalog import store

    cat = store.Catalog(tmp_path / "c.duckdb")
    query = ("select md5(i::varchar) as id, 'instruction number ' || i || ' of many' as text, i as n "
             "from range(200000) t(i)")
    with cat.held():
        cat.stage_output_query("d" * 64, query)
    with cat._read() as con:
        kinds = dict(con.execute(
            "select column_name || ':' || segment_type, list(distinct compression) from pragma_storage_info(?) "
            "where segment_type != 'VALIDITY' group by 1", [store.output_table("d" * 64)]).fetchall())
    assert kinds["id:VARCHAR"] == kinds["text:VARCHAR"] == ["ZSTD"], kinds
    assert "ZSTD" not in kinds["n:BIGINT"], kinds


def test_a_bulk_store_fills_small_row_groups_and_no_later_write_rewrites_it(tmp_path):
    """Stored outputs use `ROW_GROUP_ROWS`-row groups, so the reader's batches (here the row groups of
    a Parquet file, 15,000 to 45,000 rows) are written in parallel as they come, most ending in a
    part-filled group. A later write's checkpoint leaves those groups as they are: merging them would
    write the table a second time and leave the file about twice its size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataforge.catalog import db, store

    src = tmp_path / "rows.parquet"
    n = 0
    with pq.ParquetWriter(src, pa.schema([("text", pa.string())])) as w:
        for size in [40_000, 20_000, 45_000, 15_000, 35_000] * 2:
            w.write_table(pa.table({"text": [f"instruction number {i} of many, with some words"
                                             for i in range(n, n + size)]}), row_group_size=size)
            n += size
    cat = store.Catalog(tmp_path / "c.duckdb")
    table = store.output_table("a" * 64)
    with cat.held():
        cat.stage_output_query("a" * 64, f"select md5(text) as id, text from read_parquet('{src}')")
    with cat._read() as con:
        used = con.execute("select used_blocks from pragma_database_size()").fetchone()[0]
    cat.stage_output_query("b" * 64, "select 'x' as id")  # another write connection, another checkpoint
    with cat._read() as con:
        groups = con.execute(f"select row_group_id, max(count) from pragma_storage_info('{table}') "
                             "group by all order by 1").fetchall()
        total, free = con.execute("select total_blocks, free_blocks from pragma_database_size()").fetchone()
        assert con.execute(f"select count(*), min(text) = 'instruction number 0 of many, with some words' "
                           f"from {table}").fetchone() == (n, True)
    sizes = [c for _, c in groups]
    assert max(sizes) == db.ROW_GROUP_ROWS and 40_000 - db.ROW_GROUP_ROWS in sizes, sizes
    assert free <= 4 and total <= used + 4, (used, total, free)


def test_a_catalog_may_be_named_like_duckdbs_own_databases(tmp_path):
    """A write connection attaches the file under a name of its own: a catalog called memory.duckdb
    (DuckDB's name for the in-memory database it attaches to) builds and reads, and spills beside itself."""
    from dataforge.catalog import db, store

    for name in ("memory", "system", "temp"):
        path = tmp_path / f"{name}.duckdb"
        cat = store.Catalog(path)
        cat.stage_output_query("c" * 64, "select 'x' as id")
        with db.connect(path, read_only=False) as con:
            assert con.execute("select current_setting('temp_directory')").fetchone()[0] == f"{path}.tmp"
        with cat._read() as con:
            assert con.execute(f"select id from {store.output_table('c' * 64)}").fetchall() == [("x",)]


def test_a_write_connection_without_file_access_reads_no_files(tmp_path):
    """`allow_files=False` turns external access off on a write connection too (it is set after the
    catalog is attached, which needs it), and no statement can turn it back on."""
    from dataforge.catalog import db, store

    path = tmp_path / "c.duckdb"
    store.Catalog(path)
    (tmp_path / "secret.csv").write_text("a\n1\n", encoding="utf-8")
    with db.connect(path, read_only=False, allow_files=False) as con:
        with pytest.raises(duckdb.Error, match="(?i)disabled|permission"):
            con.execute(f"select * from read_csv('{tmp_path / 'secret.csv'}')").fetchall()
        with pytest.raises(duckdb.Error):
            con.execute("set enable_external_access = true")
        con.execute("create table t as select 1 as x")
    with db.connect(path, read_only=True) as con:
        assert con.execute("select x from t").fetchall() == [(1,)]


def test_a_catalog_file_of_an_older_storage_version_keeps_duckdbs_own_text_compression(tmp_path):
    """A catalog made by DuckDB 1.0/1.1 keeps that storage version, which has no zstd: forcing it
    there would store text uncompressed (3x larger), so such a file keeps DuckDB's own choice."""
    from dataforge.catalog import store

    path = tmp_path / "old.duckdb"
    con = duckdb.connect()
    con.execute(f"attach '{path}' as old (storage_version 'v1.0.0')")
    con.close()
    cat = store.Catalog(path)
    with cat.held():
        cat.stage_output_query("c" * 64, "select 'instruction number ' || i || ' of many' as text from range(200000) t(i)")
    with cat._read() as con:
        used = con.execute("select list(distinct compression) from pragma_storage_info(?) where segment_type = 'VARCHAR'",
                           [store.output_table("c" * 64)]).fetchone()[0]
    assert "Uncompressed" not in used and "ZSTD" not in used, used


def test_a_source_streaming_into_the_catalog_reports_its_progress(tmp_path, monkeypatch):
    """The build's bar for a source stored straight from its file moves while DuckDB works."""
    from dataforge.catalog import store

    monkeypatch.setattr(store, "PROGRESS_EVERY", 0.02)  # the store may take well under a second
    cat = store.Catalog(tmp_path / "c.duckdb")
    seen: list[float] = []
    query = "select md5(i::varchar) as id from range(1500000) t(i)"
    with cat.held():
        assert cat.stage_output_query("e" * 64, query, progress=seen.append) == 1_500_000
    assert seen and all(0 < f <= 1 for f in seen) and seen == sorted(seen), seen


def test_the_progress_bar_never_moves_back_when_duckdb_starts_its_next_statement(monkeypatch):
    """DuckDB's estimate restarts at 0 for each statement (the row count after the store): the
    fraction the build shows stays where it was instead."""
    import threading

    from dataforge.catalog import store

    estimates = iter([-1.0, 40.0, 0.0, 25.0, 90.0, 0.0])
    drained = threading.Event()

    class Connection:
        def execute(self, sql):
            return self

        def query_progress(self):
            value = next(estimates, None)
            if value is None:
                drained.set()
                return -1.0
            return value

    seen: list[float] = []
    monkeypatch.setattr(store, "PROGRESS_EVERY", 0.001)
    with store._watching(Connection(), seen.append):
        assert drained.wait(5)
    assert seen == [0.4, 0.9]


def test_metadata_frames_built_without_arrow_equal_duckdbs_own():
    """`ls`, `history` and `runs` build their few rows' frames from Python values (no pyarrow import):
    the frame is `.pl()`'s, value for value and type for type, NULLs and unicode included; a column of
    any other type (a list, a decimal, JSON) takes `.pl()` itself."""
    import datetime as dt

    from dataforge.catalog.query import _small_frame

    con = duckdb.connect()
    con.execute("""create table t as select * from (values
        ('a', 1::bigint, 2::integer, 0.5::double, true, timestamp '2026-12-01 10:11:12.345678'),
        (null, null, null, null, null, null),
        ('数据 🙂', -9223372036854775808, -2147483648, -0.0, false, timestamp '1970-01-01'))
        t(s, b, i, d, ok, ts)""")
    for query in ("select * from t", "select * from t where false", "select s, [b] as l, 1.5 as dec from t",
                  "select s, b as s2, round(d, 2) as r from t order by s nulls first"):
        assert _small_frame(con.sql(query)).equals(con.sql(query).pl()), query
        assert _small_frame(con.sql(query)).schema == con.sql(query).pl().schema, query
    assert _small_frame(con.sql("select * from t"))["ts"][0] == dt.datetime(2026, 12, 1, 10, 11, 12, 345678)


def test_a_catalog_held_by_another_process_names_its_pid(tmp_path):
    # "(a build writing?)" guessed wrong when a long `dataforge sql` or a notebook held it.
    import subprocess
    import sys

    import pytest

    from dataforge.catalog.db import CatalogBusy, connect

    path = tmp_path / "c.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"con = duckdb.connect({str(path)!r}); print('ready', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(CatalogBusy) as err:
            with connect(path, read_only=True, wait_s=0.2):
                pass
        assert f"is locked by another process (PID {holder.pid}, python" in str(err.value)
        assert "a build writing, or a command reading it) and stayed locked for 0s" in str(err.value)
    finally:
        holder.communicate("", timeout=30)


def test_a_catalog_opened_holding_its_connection_is_held_by_its_own_thread(tmp_path):
    """`Catalog(hold=True)` keeps the connection that migrated the file for the first `held()`;
    another thread cannot adopt it (it would wait forever on a lock the first thread holds)."""
    import threading

    from dataforge.catalog.query import run_select
    from dataforge.catalog.store import Catalog

    cat = Catalog(tmp_path / "c.duckdb", hold=True)
    raised: list[BaseException] = []

    def other() -> None:
        try:
            with cat.held():
                pass
        except RuntimeError as e:
            raised.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert not t.is_alive() and "held by the thread that opened it" in str(raised[0])
    with cat.held():
        cat.begin_build("r", "r.yaml", "0" * 64)
    assert run_select(tmp_path / "c.duckdb", "select count(*) n from builds")["n"][0] == 1  # let go: readable
