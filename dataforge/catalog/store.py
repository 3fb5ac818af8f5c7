"""`Catalog`: the only writer of the DuckDB catalog. Every write is one short transaction."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from dataforge import __version__, pids
from dataforge.catalog import migrations
from dataforge.catalog.db import connect, transaction
from dataforge.errors import UserError
from dataforge.sqlquote import quote_ident, quote_literal

if TYPE_CHECKING:
    import polars as pl

    from dataforge.hashing import Hashed
else:
    from dataforge.lazy import polars as pl

RESERVED_NAMES = {"builds", "steps", "step_outputs", "datasets", "rejections", "llm_calls", "lineage",
                  "llm_batches", "runs", "run_losses"}


STAGE_MEMORY_LIMIT = "256MB"
"""DuckDB's memory limit while a source streams into the catalog (see `Catalog.stage_output_query`)."""


def output_table(fingerprint: str) -> str:
    """Name of the table that stores the output of the step with this fingerprint."""
    return f"_s_{fingerprint[:24]}"


def _epoch(utc: dt.datetime | None) -> float | None:
    """A naive UTC timestamp from the catalog as a `time.time()`."""
    return None if utc is None else utc.replace(tzinfo=dt.timezone.utc).timestamp()


def utc_now() -> dt.datetime:
    """Now in UTC, as the catalog stores times (naive timestamps)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def to_arrow(df: pl.DataFrame):
    """Arrow view of a frame for DuckDB, keeping polars' string views (no copy of the strings).

    One chunk: DuckDB scans a single-chunk table in parallel and keeps row order (about twice as
    fast to store as the many chunks a multi-block read leaves)."""
    if df.n_chunks() > 1:
        df = df.rechunk()
    return df.to_arrow(compat_level=pl.CompatLevel.newest())


class Catalog:
    """Read-write handle on one catalog file. Holds no connection between calls, except inside `held()`
    (and, opened with `hold=True`, from opening until that first block)."""

    def __init__(self, path: str | Path, *, hold: bool = False):
        """Open (creating or migrating) the catalog at `path`. `hold`: the connection that migrated it
        stays open for the first `held()` block, instead of that block opening the file again."""
        self.path = Path(path)
        self._held: tuple[int, Any, contextlib.ExitStack] | None = None  # (thread, connection, its closer)
        self._adopt = False  # the held connection is __init__'s, waiting for the first held() to own it
        if self.path.exists() and self.path.is_dir():
            raise UserError(f"catalog path {self.path} is a directory; give a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the catalog's folder {self.path.parent}: {e.strerror}") from None
        if hold:
            self._take()
        try:
            with self._write() as con:
                if migrations.foreign(con):
                    raise UserError(f"{self.path} is a DuckDB database but not a dataforge catalog (it has tables "
                                    "of its own and no dataforge tables); give the catalog's file, or a new path "
                                    "to create one")
                migrations.apply(con)
        except BaseException:
            self._let_go()
            raise
        self._adopt = hold

    def _write(self):
        con = self._held_connection()
        return contextlib.nullcontext(con) if con is not None else connect(self.path, read_only=False)

    def _read(self):
        con = self._held_connection()
        return contextlib.nullcontext(con) if con is not None else connect(self.path, read_only=True)

    # -- holding one connection across back-to-back calls ---------------------------
    @contextlib.contextmanager
    def held(self):
        """Calls from this thread inside the block share one read-write connection instead of opening the
        file each (opening a DuckDB database costs about 30 ms). Other processes cannot open the catalog
        meanwhile, so a build holds it only between steps: `released()` lets go while a step runs."""
        if self._held is not None and not self._adopt:
            yield
            return
        if self._held is None:
            self._take()
        elif self._held[0] != threading.get_ident():  # its lock would be held by a thread that never lets go
            raise RuntimeError("a Catalog opened with hold=True is held by the thread that opened it")
        self._adopt = False
        try:
            yield
        finally:
            self._let_go()

    @contextlib.contextmanager
    def released(self):
        """Inside `held()`: no connection held for the block (a step's run), taken again after it."""
        if self._held_connection() is None:
            yield
            return
        self._let_go()
        try:
            yield
        finally:
            self._take()

    def _held_connection(self) -> Any:
        h = self._held
        return h[1] if h is not None and h[0] == threading.get_ident() else None

    def _take(self) -> None:
        stack = contextlib.ExitStack()
        con = stack.enter_context(connect(self.path, read_only=False))
        self._held = (threading.get_ident(), con, stack)

    def _let_go(self) -> None:
        h, self._held = self._held, None
        if h is not None:
            h[2].close()

    # -- builds ---------------------------------------------------------------
    def begin_build(self, recipe_name: str, recipe_path: str, recipe_sha256: str,
                    started: float | None = None) -> str:
        """Record a running build; `started` (a `time.time()`, default now) when its work began
        before this call (sources staged first)."""
        started = time.time() if started is None else started
        build_id = dt.datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.mark_killed_builds()
        with self._write() as con, transaction(con):
            _refuse_a_second_build(con, recipe_name)
            con.execute(
                """insert into builds (build_id, recipe_name, recipe_path, recipe_sha256, started_at, status,
                                       dataforge_version, pid, host)
                   values (?, ?, ?, ?, ?, 'running', ?, ?, ?)""",
                [build_id, recipe_name, recipe_path, recipe_sha256,
                 dt.datetime.fromtimestamp(started, dt.timezone.utc).replace(tzinfo=None), __version__, os.getpid(),
                 socket.gethostname()],
            )
        return build_id

    def check_not_building(self, recipe_name: str) -> None:
        """Refuse (a `UserError`) while a live process of this host builds the same recipe here."""
        self.mark_killed_builds()
        with self._read() as con:
            _refuse_a_second_build(con, recipe_name)

    def mark_killed_builds(self) -> list[str]:
        """Mark `running` builds whose process on this host is gone as `killed`; return their ids."""
        host = socket.gethostname()
        with self._read() as con:
            running = con.execute("select build_id, pid, started_at from builds where status = 'running' and host = ?",
                                  [host]).fetchall()
        dead = [(bid, pid) for bid, pid, started in running
                if pid is not None and not pids.alive(pid, _epoch(started))]
        if dead:
            with self._write() as con:
                for bid, pid in dead:
                    con.execute("update builds set status = 'killed', error = ? where build_id = ? "
                                "and status = 'running'",
                                [f"the build process (pid {pid}) ended without finishing", bid])
        return [bid for bid, _ in dead]

    def finish_build(self, build_id: str, status: str, error: str | None = None) -> None:
        with self._write() as con:
            con.execute(
                "update builds set finished_at = ?, status = ?, error = ? where build_id = ?",
                [utc_now(), status, error, build_id],
            )

    # -- step outputs -----------------------------------------------------------
    def lookup_output(self, fingerprint: str) -> dict[str, Any] | None:
        """Metadata of a stored step output with this fingerprint, or None."""
        with self._read() as con:
            row = con.execute(
                "select table_name, rows_in, rows, rejected, build_id from step_outputs where fingerprint = ?",
                [fingerprint],
            ).fetchone()
        if row is None:
            return None
        return {"table_name": row[0], "rows_in": row[1], "rows": row[2], "rejected": row[3], "build_id": row[4]}

    def count_rejections(self, fingerprint: str, reason: str) -> int:
        """How many rows the stored output with this fingerprint rejected for `reason`."""
        with self._read() as con:
            return con.execute("select count(*) from rejections where fingerprint = ? and reason = ?",
                               [fingerprint, reason]).fetchall()[0][0]

    def load_output(self, fingerprint: str) -> pl.DataFrame:
        with self._read() as con:
            return con.sql(f"select * from {quote_ident(output_table(fingerprint))}").pl()

    def save_step_output(self, *, build_id: str, step_id: str, type: str, fingerprint: str,
                         df: pl.DataFrame, rows_in: int, seconds: float, inputs: list[str],
                         rejections: pl.DataFrame | None, lineage: pl.DataFrame | None,
                         notes: dict[str, Any] | None = None) -> None:
        """Store a step's output, its rejections and lineage, and its `steps` row, atomically."""
        table = output_table(fingerprint)
        with self._write() as con, transaction(con):
            con.register("_df", to_arrow(df))
            con.execute(f"create or replace table {quote_ident(table)} as select * from _df")
            con.unregister("_df")
            _record_output(con, build_id=build_id, step_id=step_id, type=type, fingerprint=fingerprint,
                           rows=df.height, rows_in=rows_in, seconds=seconds, inputs=inputs,
                           rejections=rejections, lineage=lineage, notes=notes)

    def stage_output_query(self, fingerprint: str, query: str,
                           progress: Callable[[float], None] | None = None) -> int:
        """Store the rows of a DuckDB `query` (a source read straight from its file, `id` first) as the
        output table of `fingerprint`, not yet recorded as any step's output (`record_staged_output`,
        once the build has begun; `drop_staged` when it will not); return the number of rows. A query
        that fails leaves the catalog as it was (its `duckdb.Error` propagates). `progress` is told
        the fraction done (DuckDB's estimate, never decreasing) every `PROGRESS_EVERY` seconds while the
        query runs."""
        import duckdb

        table = quote_ident(output_table(fingerprint))
        with self._write() as con, _watching(con, progress):
            # Streaming a file into a table needs little memory, but DuckDB sizes its buffers to its
            # limit (most of the machine's RAM): a tight one keeps a million-row ingest ~20% smaller.
            # Rows too large for it (hundreds of KiB each) make the store run out: then it runs again
            # without one.
            for limit in (STAGE_MEMORY_LIMIT, None):
                try:
                    if limit:
                        con.execute(f"set memory_limit = '{limit}'")
                    with transaction(con):
                        con.execute(f"create or replace table {table} as {query}")
                        con.execute(f"comment on table {table} is {quote_literal(_staged_by())}")
                        return con.execute(f"select count(*) from {table}").fetchone()[0]
                except duckdb.OutOfMemoryException:
                    if limit is None:
                        raise
                finally:
                    con.execute("reset memory_limit")
        raise AssertionError("unreachable")

    def remember_file_hashes(self, hashed: dict[str, Hashed]) -> None:
        """Keep what planning hashed (absolute path -> `Hashed`) for later plans (`FileHashes`)."""
        if not hashed:
            return
        rows = [[path, *h.identity, h.sha256, h.hashed_at_ns] for path, h in hashed.items()]
        with self._write() as con, transaction(con):
            con.executemany("insert or replace into _file_hashes values (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def record_staged_output(self, *, build_id: str, step_id: str, type: str, fingerprint: str, rows: int,
                             rows_in: int, seconds: float, inputs: list[str]) -> None:
        """The `step_outputs` and `steps` rows of an output `stage_output_query` stored."""
        with self._write() as con, transaction(con):
            _record_output(con, build_id=build_id, step_id=step_id, type=type, fingerprint=fingerprint,
                           rows=rows, rows_in=rows_in, seconds=seconds, inputs=inputs, rejections=None,
                           lineage=None, notes=None)

    def drop_abandoned_staged(self) -> list[str]:
        """Drop the output tables that `stage_output_query` stored for a process of this host that is
        gone without recording them (killed outright between storing its sources and beginning its
        build); return their names. A live build's staged tables are left alone."""
        with self._read() as con:
            rows = con.execute(
                """select table_name, comment from duckdb_tables()
                   where database_name = current_database() and starts_with(table_name, '_s_')
                     and starts_with(comment, ?) and table_name not in (select table_name from step_outputs)""",
                [_STAGED_BY]).fetchall()
        host = socket.gethostname()
        gone = [t for t, comment in rows if (m := _STAGED_RE.fullmatch(comment)) and m[1] == host
                and pids.gone(m[2])]
        if gone:
            with self._write() as con, transaction(con):
                for t in gone:
                    con.execute(f"drop table if exists {quote_ident(t)}")
        return gone

    def drop_staged(self, fingerprints: Iterable[str]) -> None:
        """Drop output tables `stage_output_query` stored that no step output records."""
        with self._write() as con, transaction(con):
            for fp in fingerprints:
                if con.execute("select count(*) from step_outputs where fingerprint = ?", [fp]).fetchone()[0] == 0:
                    con.execute(f"drop table if exists {quote_ident(output_table(fp))}")

    def record_step(self, *, build_id: str, step_id: str, type: str, fingerprint: str, rows_in: int | None,
                    rows_out: int | None, rejected: int | None, seconds: float, status: str,
                    inputs: list[str], error: str | None = None) -> None:
        """A `steps` row for a step that was reused or failed (`error` says why it failed)."""
        with self._write() as con:
            _insert_step(con, build_id=build_id, step_id=step_id, type=type, fingerprint=fingerprint,
                         rows_in=rows_in, rows_out=rows_out, rejected=rejected, seconds=seconds, status=status,
                         inputs=inputs, error=error)

    # -- datasets ---------------------------------------------------------------
    def dataset_owners(self, names: list[str]) -> dict[str, tuple[str, str]]:
        """Dataset name -> (the name as the catalog has it, the recipe whose build published its latest
        version), for names that exist; matched ignoring case, as SQL matches the datasets' views."""
        if not names:
            return {}
        with self._read() as con:
            rows = con.execute(
                """select d.name, b.recipe_name from datasets d join builds b using (build_id)
                   where lower(d.name) in (select lower(unnest(?)))
                   qualify d.version = max(d.version) over (partition by d.name)""", [names]).fetchall()
        by_folded = {name.lower(): (name, recipe) for name, recipe in rows}
        return {n: by_folded[n.lower()] for n in names if n.lower() in by_folded}

    def publish(self, build_id: str, outputs: dict[str, tuple[str, str]]) -> dict[str, tuple[int, bool]]:
        """Point each output dataset's view at its step's output, in one transaction.

        `outputs` maps dataset name -> (step_id, fingerprint). A new version is recorded only when the
        fingerprint differs from the latest version's, or when that version was published by another
        recipe (a take-over, which makes this build's recipe the owner). Returns name -> (version, is_new).
        """
        versions: dict[str, tuple[int, bool]] = {}
        with self._write() as con, transaction(con):
            for name, (step_id, fp) in outputs.items():
                latest = con.execute(
                    """select d.version, d.fingerprint, b.recipe_name = (select recipe_name from builds
                                                                          where build_id = ?)
                       from datasets d left join builds b using (build_id) where d.name = ?
                       order by d.version desc limit 1""", [build_id, name]).fetchone()
                if latest is not None and latest[1] == fp and latest[2]:
                    versions[name] = (latest[0], False)
                    continue
                table = output_table(fp)
                rows = con.execute(f"select count(*) from {quote_ident(table)}").fetchone()[0]
                version = (latest[0] if latest else 0) + 1
                con.execute("insert into datasets values (?, ?, ?, ?, ?, ?, ?)",
                            [name, version, build_id, step_id, fp, rows, utc_now()])
                con.execute(f"create or replace view {quote_ident(name)} as "
                            f"select * from {quote_ident(table)}")
                versions[name] = (version, True)
        return versions

    # -- LLM call log -------------------------------------------------------------
    def record_llm_calls(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append calls to `llm_calls` in one transaction (columns as in the migration)."""
        rows = list(rows)
        if rows:
            with self._write() as con:
                _insert_llm_calls(con, rows)

    def cached_llm_responses(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """Successful logged calls for these request hashes (latest per hash)."""
        return self._latest_llm_calls(hashes, ("ok",))

    def failed_llm_calls(self, hashes: list[str]) -> dict[str, str]:
        """request_hash -> error, for the hashes whose latest call was given up (`error`; not `retry`, `ok`)."""
        latest = self._latest_llm_calls(hashes, ("ok", "retry", "error"))
        return {h: r["error"] or "failed" for h, r in latest.items() if r["status"] == "error"}

    def _latest_llm_calls(self, hashes: list[str], statuses: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        if not hashes:
            return {}
        with self._read() as con:
            con.register("_h", pl.DataFrame({"h": hashes}).to_arrow())
            df = con.sql(
                """select c.* from llm_calls c join _h on c.request_hash = _h.h
                   where list_contains(?, c.status)
                   qualify row_number() over (partition by c.request_hash order by c.created_at desc) = 1""",
                params=[list(statuses)]).pl()
        return {r["request_hash"]: r for r in df.iter_rows(named=True)}

    def answered_hash_prefixes(self) -> Any:
        """The distinct first 16 characters of every request hash with an `ok` call, sorted, as a numpy
        `S16` array: a compact index that tells a request never answered before without a query."""
        import numpy as np

        with self._read() as con:
            got = con.execute("select distinct left(request_hash, 16) as p from llm_calls "
                              "where status = 'ok' order by p").fetchnumpy()["p"]
        return np.asarray(got, dtype="S16")

    def llm_usage(self, build_id: str) -> tuple[int, float]:
        """(requests sent, USD spent) by this build so far: what `max_calls` and `budget_usd` count."""
        with self._read() as con:
            row = con.execute(
                """select count(distinct request_hash) filter (where status in ('ok', 'error')),
                          coalesce(sum(cost_usd), 0) from llm_calls where build_id = ?""", [build_id]).fetchone()
        return int(row[0] or 0), float(row[1] or 0.0)

    # -- batch API submissions -------------------------------------------------------
    _BATCH_COLS = ("batch_id", "provider", "endpoint", "model", "build_id", "step_id", "request_hash",
                   "custom_id", "request", "status", "error", "submitted_at", "updated_at", "intent")

    def record_batch_intent(self, intent: str, rows: Iterable[dict[str, Any]]) -> None:
        """Store the items of a batch about to be submitted (status `submitting`, no batch id yet).

        Written before the provider is asked, so a crash between its answer and `confirm_batch`
        leaves a trace the next build looks for (`pending_batch_intents`)."""
        now = utc_now()
        values = [[intent if c == "intent" else "submitting" if c == "status" else
                   now if c in ("submitted_at", "updated_at") else r.get(c) for c in self._BATCH_COLS] for r in rows]
        if not values:
            return
        with self._write() as con, transaction(con):
            con.executemany(f"insert into llm_batches ({', '.join(self._BATCH_COLS)}) "
                            f"values ({', '.join('?' * len(self._BATCH_COLS))})", values)

    def confirm_batch(self, intent: str, batch_id: str) -> None:
        """The provider accepted the batch of this intent: its items are `submitted` to `batch_id`."""
        with self._write() as con:
            con.execute("update llm_batches set batch_id = ?, status = 'submitted', updated_at = ? "
                        "where intent = ? and status = 'submitting'", [batch_id, utc_now(), intent])

    def abandon_batch_intent(self, intent: str, why: str) -> None:
        """No batch was found for this intent: the provider never got it (its items may be sent again)."""
        with self._write() as con:
            con.execute("update llm_batches set status = 'unsent', error = ?, updated_at = ? "
                        "where intent = ? and status = 'submitting'", [why, utc_now(), intent])

    def pending_batch_intents(self, hashes: list[str], provider: str,
                              endpoint: str) -> dict[str, tuple[Any, list[str]]]:
        """intent -> (when it was recorded, its request hashes), for intents of these hashes never confirmed."""
        if not hashes:
            return {}
        with self._read() as con:
            con.register("_h", pl.DataFrame({"h": hashes}).to_arrow())
            rows = con.execute(
                """select b.intent, min(b.submitted_at), list(b.request_hash order by b.request_hash)
                   from llm_batches b join _h on b.request_hash = _h.h
                   where b.status = 'submitting' and b.provider = ? and b.endpoint = ?
                   group by b.intent""", [provider, endpoint]).fetchall()
        return {intent: (when, hs) for intent, when, hs in rows}

    def open_llm_batches(self, hashes: list[str], provider: str, endpoint: str) -> dict[str, str]:
        """request_hash -> batch_id for these hashes still `submitted` to a batch on this provider/endpoint."""
        if not hashes:
            return {}
        with self._read() as con:
            con.register("_h", pl.DataFrame({"h": hashes}).to_arrow())
            rows = con.execute(
                """select b.request_hash, b.batch_id from llm_batches b join _h on b.request_hash = _h.h
                   where b.status = 'submitted' and b.provider = ? and b.endpoint = ?
                   qualify row_number() over (partition by b.request_hash order by b.submitted_at desc) = 1""",
                [provider, endpoint]).fetchall()
        return {h: bid for h, bid in rows}

    def llm_batch_items(self, batch_id: str) -> list[dict[str, Any]]:
        """Every stored item of one batch."""
        with self._read() as con:
            df = con.sql("select * from llm_batches where batch_id = ?", params=[batch_id]).pl()
        return list(df.iter_rows(named=True))

    def finish_llm_batch(self, batch_id: str, calls: Iterable[dict[str, Any]],
                         outcomes: dict[str, tuple[str, str | None]]) -> None:
        """Log a finished batch's answers to `llm_calls` and set its items' status, in one transaction.

        `outcomes` maps custom_id -> (status, error); statuses: succeeded, errored, expired, canceled, failed.
        """
        calls = list(calls)
        now = utc_now()
        with self._write() as con, transaction(con):
            _insert_llm_calls(con, calls)
            con.executemany(
                "update llm_batches set status = ?, error = ?, updated_at = ? where batch_id = ? and custom_id = ?",
                [[st, err, now, batch_id, cid] for cid, (st, err) in outcomes.items()])

    # -- training / ranking / evaluation runs ------------------------------------------
    def begin_run(self, *, kind: str, method: str | None, config: dict[str, Any], config_path: str | None,
                  config_sha256: str | None, base_model: str | None, base_model_sha256: str | None,
                  data: list[dict[str, Any]], device: str, seed: int | None, output_dir: str | None,
                  repeat_of: str | None = None, started_at: dt.datetime | None = None) -> str:
        """Record a run as `running` and return its id. `config` is the resolved config (repeatable as is);
        `data` lists what the run reads ({dataset, version, fingerprint} or {export, manifest_sha256});
        `started_at` (`utc_now()` when the command began, before it read data and loaded models) defaults to now."""
        run_id = dt.datetime.now().strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.mark_killed_runs()
        with self._write() as con:
            con.execute(
                """insert into runs (run_id, kind, method, status, config, config_path, config_sha256, base_model,
                                     base_model_sha256, data, device, seed, output_dir, started_at,
                                     dataforge_version, pid, host, repeat_of)
                   values (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [run_id, kind, method, json.dumps(config, sort_keys=True, default=str), config_path, config_sha256,
                 base_model, base_model_sha256, json.dumps(data, sort_keys=True, default=str), device, seed,
                 output_dir, started_at or utc_now(), __version__, os.getpid(), socket.gethostname(), repeat_of])
        return run_id

    def resume_run(self, run_id: str, *, stage: str, step: int, later_stages: Iterable[str] = ()) -> None:
        """Mark a run `running` again in this process, dropping the losses it logged after the checkpoint
        it resumes from (`step` of `stage`, and any of `later_stages`): the resumed process logs them again."""
        with self._write() as con, transaction(con):
            found = con.execute("select count(*) from runs where run_id = ?", [run_id]).fetchone()[0]
            if not found:
                raise UserError(f"the checkpoint belongs to run {run_id}, which this catalog ({self.path}) "
                                "does not have; resume with the catalog it was started with")
            con.execute("update runs set status = 'running', pid = ?, host = ?, error = null, finished_at = null "
                        "where run_id = ?", [os.getpid(), socket.gethostname(), run_id])
            con.execute("delete from run_losses where run_id = ? and stage = ? and step > ?", [run_id, stage, step])
            for later in later_stages:
                con.execute("delete from run_losses where run_id = ? and stage = ?", [run_id, later])

    _LOSS_COLS = ("stage", "split", "step", "loss", "learning_rate", "tokens", "seconds")

    def log_run_losses(self, run_id: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append loss-curve points ({stage, split, step, loss, learning_rate, tokens, seconds})."""
        values = [[run_id, *(r.get(c) for c in self._LOSS_COLS)] for r in rows]
        if not values:
            return
        with self._write() as con:
            con.executemany(f"insert into run_losses (run_id, {', '.join(self._LOSS_COLS)}) "
                            f"values ({', '.join('?' * (len(self._LOSS_COLS) + 1))})", values)

    def finish_run(self, run_id: str, *, status: str, metrics: dict[str, Any] | None = None,
                   adapter_path: str | None = None, error: str | None = None) -> None:
        """Close a run: status (`done`, `failed`, `interrupted`), metrics (JSON), adapter path, wall time."""
        now = utc_now()
        with self._write() as con:
            con.execute(
                """update runs set status = ?, metrics = coalesce(?, metrics), adapter_path = coalesce(?, adapter_path),
                          error = ?, finished_at = ?, wall_seconds = epoch(? - started_at) where run_id = ?""",
                [status, json.dumps(metrics, sort_keys=True, default=str) if metrics is not None else None,
                 adapter_path, error, now, now, run_id])

    def mark_killed_runs(self) -> list[str]:
        """Mark `running` runs whose process on this host is gone as `killed`; return their ids."""
        host = socket.gethostname()
        with self._read() as con:
            running = con.execute("select run_id, pid from runs where status = 'running' and host = ?",
                                  [host]).fetchall()
        # plain pid check: resume_run rewrites the pid but keeps started_at
        dead = [(rid, pid) for rid, pid in running if pid is not None and not pids.alive(pid)]
        if dead:
            with self._write() as con:
                for rid, pid in dead:
                    con.execute("update runs set status = 'killed', error = ? where run_id = ? and status = 'running'",
                                [f"the run's process (pid {pid}) ended without finishing", rid])
        return [rid for rid, _ in dead]


def _refuse_a_second_build(con, recipe_name: str) -> None:
    """A second build of one recipe at once would run (and pay for) the same steps and LLM calls as
    the first, which has not logged them yet: refuse it while the first one's process is alive."""
    for build_id, pid, started in con.execute(
            "select build_id, pid, started_at from builds where status = 'running' and recipe_name = ? "
            "and host = ? order by started_at", [recipe_name, socket.gethostname()]).fetchall():
        if pid is not None and pid != os.getpid() and pids.alive(pid, _epoch(started)):
            raise UserError(f"recipe {recipe_name!r} is being built into this catalog right now (build {build_id}, "
                            f"pid {pid}, started {started:%Y-%m-%d %H:%M:%S} UTC); wait for it to finish, or stop "
                            "it: a second build at once would make the same steps and LLM calls again")


@functools.cache
def _llm_call_schema() -> dict[str, Any]:
    """The columns of `llm_calls` (as in the migrations) and their polars types: the one list every
    insert uses."""
    return {
        "request_hash": pl.Utf8, "build_id": pl.Utf8, "step_id": pl.Utf8, "provider": pl.Utf8, "model": pl.Utf8,
        "params": pl.Utf8, "prompt": pl.Utf8, "response": pl.Utf8, "finish_reason": pl.Utf8,
        "input_tokens": pl.Int32, "output_tokens": pl.Int32, "cost_usd": pl.Float64, "latency_ms": pl.Float64,
        "status": pl.Utf8, "error": pl.Utf8, "created_at": pl.Datetime("us"),
    }


def _insert_llm_calls(con, rows: list[dict[str, Any]]) -> None:
    """Insert `llm_calls` rows on the caller's connection (inside its transaction, if any).

    Rows go in as one Arrow table: per-row parameter binding costs about a millisecond a row.
    """
    if not rows:
        return
    schema = _llm_call_schema()
    cols = list(schema)
    now = utc_now()
    data = {c: [r.get(c) for r in rows] for c in cols}
    data["created_at"] = [v or now for v in data["created_at"]]
    con.register("_calls", pl.DataFrame(data, schema=schema).to_arrow())
    con.execute(f"insert into llm_calls ({', '.join(cols)}) select {', '.join(cols)} from _calls")
    con.unregister("_calls")


_STAGED_BY = "staged by "
_STAGED_RE = re.compile(rf"{re.escape(_STAGED_BY)}(.+) pid ({pids.TOKEN_RE})")


def _staged_by() -> str:
    """The comment a staged output table carries until a build records it: who stored it."""
    return f"{_STAGED_BY}{socket.gethostname()} pid {pids.token()}"


PROGRESS_EVERY = 0.5
"""Seconds between two looks at a long store's progress."""


@contextlib.contextmanager
def _watching(con, progress: Callable[[float], None] | None):
    """Report `con`'s query progress to `progress` from a thread while the block runs."""
    if progress is None:
        yield
        return
    con.execute("set enable_progress_bar = true")
    con.execute("set enable_progress_bar_print = false")
    stop = threading.Event()

    def watch() -> None:
        # DuckDB's estimate restarts at 0 for each statement of the block (the count after the
        # store, a retry without a memory limit): the bar only ever moves forward.
        shown = 0.0
        while not stop.wait(PROGRESS_EVERY):
            done = min(con.query_progress(), 100.0) / 100
            if done > shown:
                shown = done
                progress(done)

    watcher = threading.Thread(target=watch, name="dataforge-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        con.execute("reset enable_progress_bar")
        con.execute("reset enable_progress_bar_print")


def _record_output(con, *, build_id: str, step_id: str, type: str, fingerprint: str, rows: int, rows_in: int,
                   seconds: float, inputs: list[str], rejections: pl.DataFrame | None,
                   lineage: pl.DataFrame | None, notes: dict[str, Any] | None) -> None:
    """The `step_outputs`, `rejections`, `lineage` and `steps` rows of an output just stored (in the
    caller's transaction)."""
    table = output_table(fingerprint)
    n_rej = 0 if rejections is None else rejections.height
    con.execute("delete from step_outputs where fingerprint = ?", [fingerprint])
    con.execute("insert into step_outputs values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [fingerprint, table, step_id, type, rows_in, rows, n_rej, build_id, utc_now()])
    # Stored again under the same fingerprint (`--force`, a retry of failed calls): the dataset versions
    # whose view shows this table keep their number and get its new row count. Those this build's recipe
    # published also get this build, whose steps (rows in/out, rejections) are now the ones that made them;
    # another recipe's version keeps its build, which says who published it (`dataset_owners`).
    con.execute("update datasets set rows = ? where fingerprint = ? and rows <> ?", [rows, fingerprint, rows])
    con.execute("""update datasets set build_id = ? where fingerprint = ? and build_id <> ? and build_id in (
                       select build_id from builds where recipe_name = (
                           select recipe_name from builds where build_id = ?))""",
                [build_id, fingerprint, build_id, build_id])
    con.execute("delete from rejections where fingerprint = ?", [fingerprint])
    if rejections is not None and rejections.height:
        con.register("_rej", rejections.select("row_id", "reason", "score", "detail").to_arrow())
        con.execute("insert into rejections select ?, ?, ?, row_id, reason, score, detail from _rej",
                    [build_id, step_id, fingerprint])
        con.unregister("_rej")
    con.execute("delete from lineage where fingerprint = ?", [fingerprint])
    if lineage is not None and lineage.height:
        con.register("_lin", lineage.select("row_id", "parent_id").to_arrow())
        con.execute("insert into lineage select row_id, parent_id, ?, ? from _lin", [step_id, fingerprint])
        con.unregister("_lin")
    _insert_step(con, build_id=build_id, step_id=step_id, type=type, fingerprint=fingerprint, rows_in=rows_in,
                 rows_out=rows, rejected=n_rej, seconds=seconds, status="built", inputs=inputs, notes=notes)


def _insert_step(con, *, build_id: str, step_id: str, type: str, fingerprint: str, rows_in: int | None,
                 rows_out: int | None, rejected: int | None, seconds: float, status: str, inputs: list[str],
                 error: str | None = None, notes: dict[str, Any] | None = None) -> None:
    con.execute("insert into steps (build_id, step_id, type, fingerprint, rows_in, rows_out, rejected, seconds, "
                "status, inputs, error, notes) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [build_id, step_id, type, fingerprint, rows_in, rows_out, rejected, seconds, status, inputs,
                 error, json.dumps(notes, default=str, ensure_ascii=False) if notes else None])
