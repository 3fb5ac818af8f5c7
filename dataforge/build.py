"""Run a plan: reuse unchanged steps, run the rest, store outputs, publish datasets.

The executor checks every step's row accounting (`Step.expected_rows`) after it runs, records a
failed step with its error, stores each step's inputs (the DAG) with its `steps` row, and
publishes a dataset version only when the output changed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dataforge.catalog.db import is_interrupt
from dataforge.catalog.handle import StepHandle
from dataforge.catalog.store import Catalog
from dataforge.errors import Terminated, UserError
from dataforge.executors.base import Executor, LocalExecutor
from dataforge.plan import Plan
from dataforge.progress import Progress
from dataforge.rows import assign_ids
from dataforge.steps.base import ID, LLM_ERROR, RunContext, Step, StepError, StepResult
from dataforge.steps.sources.base import SqlLoad

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl


@dataclass
class StepReport:
    step_id: str
    type: str
    fingerprint: str
    status: str  # built | reused | would-build | would-reuse | failed | interrupted
    rows_in: int | None = None
    rows_out: int | None = None
    rejected: int | None = None
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildResult:
    build_id: str | None
    status: str
    steps: list[StepReport] = field(default_factory=list)
    datasets: dict[str, int] = field(default_factory=dict)  # name -> version
    rows: dict[str, int] = field(default_factory=dict)  # name -> rows
    new_versions: set[str] = field(default_factory=set)  # names whose version this build created
    stored_again: set[str] = field(default_factory=set)  # names whose latest version this build rebuilt in place


class RowAccountingError(RuntimeError):
    """A step kind's output does not add up (an internal fault of the kind, not the user's)."""


def execute(plan: Plan, catalog_path: Path, *, force: bool = False, only: list[str] | None = None,
            dry_run: bool = False, quiet: bool = False, take_over: bool = False, retry_failed: bool = False,
            log: Callable[[str], None] = print, executor: Executor | None = None) -> BuildResult:
    """Build every step the outputs need; see `dataforge.api.build` for the public entry point.

    `executor` decides where a step's work runs (default: this process); storing stays here.
    """
    forced: set[str] = set()
    if force:
        forced = {s.id for s in plan.order}
    for sid in only or []:
        if sid not in plan.index:
            raise UserError(f"--only {sid!r}: no such step; steps: {', '.join(plan.index)}")
        forced |= plan.descendants(sid)

    if dry_run:
        return _dry_run(plan, catalog_path, forced, retry_failed, log)

    new = not catalog_path.exists()
    catalog = Catalog(catalog_path, hold=True)
    try:
        # One connection for the catalog work between steps (the one that opened it); none while a
        # step runs (see Catalog.held).
        with catalog.held():
            return _execute(plan, catalog, catalog_path, forced, quiet, take_over, retry_failed, log, executor)
    except _SourceRefused as e:
        if new:  # a bad data file leaves no catalog behind, as when planning finds it
            for f in (catalog_path, catalog_path.with_name(catalog_path.name + ".wal")):
                f.unlink(missing_ok=True)
        raise e.error from None


class _SourceRefused(Exception):
    """A source stored straight from its file did not pass; `error` names the line (nothing was kept)."""

    def __init__(self, error: UserError):
        self.error = error


def _execute(plan: Plan, catalog: Catalog, catalog_path: Path, forced: set[str], quiet: bool, take_over: bool,
             retry_failed: bool, log: Callable[[str], None], executor: Executor | None) -> BuildResult:
    recipe = plan.recipe
    fps = plan.fingerprints
    forced = set(forced)  # with retry_failed, grows by the steps whose LLM calls failed, and what reads them
    _check_owners(plan, catalog, take_over)
    catalog.check_not_building(recipe.name)  # before any work; begin_build checks again as it records
    catalog.drop_abandoned_staged()
    catalog.remember_file_hashes(plan.file_hashes.new)
    started = time.time()
    with Progress(quiet=quiet) as progress:
        staged = _stage_sources(plan, catalog, forced, progress)
    build_id = catalog.begin_build(recipe.name, str(plan.path), plan.sha256, started=started)
    result = BuildResult(build_id=build_id, status="running")
    frames: dict[str, pl.DataFrame] = {}
    heights: dict[str, int] = {}  # rows of each step built here
    cached: dict[str, dict[str, Any] | None] = {}
    handle = StepHandle(catalog)
    run_step = (executor or LocalExecutor()).run_step
    width = max(24, *(len(s.id) for s in plan.order))

    def built(s: Step, fp: str, rows_in: int, rows: int, n_rej: int, seconds: float, notes: dict[str, Any]) -> None:
        """Report a step this build stored: its result entry and its log lines."""
        heights[s.id] = rows
        result.steps.append(StepReport(s.id, s.type, fp, "built", rows_in, rows, n_rej, seconds, dict(notes)))
        rej = f", {n_rej:,} rejected" if n_rej else ""
        log(f"  {s.id:<{width}} built    {rows:>9,} rows  ({seconds:.2f}s{rej})")
        for key, value in notes.items():
            log(f"  {'':<{width}} note: {key}: {value}")

    def frame(sid: str) -> pl.DataFrame:
        if sid not in frames:
            frames[sid] = catalog.load_output(fps[sid])
        return frames[sid]

    try:
        with Progress(quiet=quiet) as progress:
            for s in plan.order:
                fp = fps[s.id]
                inputs = plan.inputs[s.id]
                hit = None if s.id in forced else catalog.lookup_output(fp)
                failed = catalog.count_rejections(fp, LLM_ERROR) if hit is not None and s.uses_llm() else 0
                if failed and retry_failed:  # asked again: this step and what reads it build again
                    log(f"  {s.id:<{width}} retrying {failed:,} LLM call(s) that failed in its last build")
                    forced |= plan.descendants(s.id)
                    hit = None
                cached[s.id] = hit
                if hit is not None:
                    plan.prepared.pop(s.id, None)
                    catalog.record_step(build_id=build_id, step_id=s.id, type=s.type, fingerprint=fp,
                                        rows_in=hit["rows_in"], rows_out=hit["rows"], rejected=hit["rejected"],
                                        seconds=0.0, status="reused", inputs=inputs)
                    result.steps.append(StepReport(s.id, s.type, fp, "reused", hit["rows_in"], hit["rows"],
                                                   hit["rejected"]))
                    log(f"  {s.id:<{width}} reused   {hit['rows']:>9,} rows  (unchanged, fingerprint {fp[:12]})")
                    if failed:
                        log(f"  {'':<{width}} note: {failed:,} LLM call(s) failed in its last build; "
                            "--retry-failed asks them again")
                    continue
                ctx = RunContext(recipe_path=plan.path, seed=recipe.seed, catalog_path=catalog_path,
                                 llm=recipe.llm, step_id=s.id, build_id=build_id, fingerprint=fp,
                                 input_ids=list(inputs), catalog=handle, progress=progress, log=log,
                                 retry_failed=retry_failed)
                t0 = time.perf_counter()
                prepared = plan.prepared.pop(s.id, None)
                if s.id in staged:
                    n, seconds = staged[s.id]
                    rows_in = n  # a source's rows_in is the rows it read
                    catalog.record_staged_output(build_id=build_id, step_id=s.id, type=s.type, fingerprint=fp,
                                                 rows=n, rows_in=rows_in, seconds=seconds, inputs=inputs)
                    built(s, fp, rows_in, n, 0, seconds, {})
                    continue
                try:
                    ins = [frame(p) for p in inputs]
                    rows_in = s.accounted_inputs([df.height for df in ins])
                    # Every step gets a progress line (a live bar past a second; timed lines off a TTY)
                    # unless it opens its own counted task, which then replaces this one.
                    # Rows planning prepared need no run, so the connection stays (letting go costs ~40 ms).
                    with progress.task(f"{s.id} ({s.type})", total=rows_in or None, fallback=True) as task, \
                            (catalog.released() if prepared is None else contextlib.nullcontext()):
                        out = prepared if prepared is not None else run_step(s, ins, ctx)
                        task.advance(rows_in)
                    res = out if isinstance(out, StepResult) else StepResult(df=out)
                    if res.rows_read is not None:
                        rows_in = res.rows_read
                    _check_accounting(s, res, rows_in)
                    df, lineage = _finish_rows(s, res)
                except BaseException as e:
                    catalog.record_step(build_id=build_id, step_id=s.id, type=s.type, fingerprint=fp,
                                        rows_in=None, rows_out=None, rejected=None,
                                        seconds=time.perf_counter() - t0, inputs=inputs,
                                        status="interrupted" if is_interrupt(e) else "failed",
                                        error=_error_text(plan, e))
                    if isinstance(e, StepError):
                        raise plan.locate(e) from None
                    if is_interrupt(e) and not isinstance(e, KeyboardInterrupt):  # DuckDB's, from Ctrl-C
                        raise KeyboardInterrupt from None
                    raise
                seconds = time.perf_counter() - t0
                catalog.save_step_output(build_id=build_id, step_id=s.id, type=s.type, fingerprint=fp, df=df,
                                         rows_in=rows_in, seconds=seconds, inputs=inputs,
                                         rejections=res.rejections, lineage=lineage, notes=res.notes)
                frames[s.id] = df
                built(s, fp, rows_in, df.height, 0 if res.rejections is None else res.rejections.height, seconds,
                      res.notes)
        outputs = {name: (sid, fps[sid]) for name, sid in recipe.outputs.items()}
        for name, (version, is_new) in catalog.publish(build_id, outputs).items():
            result.datasets[name] = version
            if is_new:
                result.new_versions.add(name)
            elif outputs[name][0] in heights:  # same fingerprint, built again (--force, a retry)
                result.stored_again.add(name)
        for name, (sid, _) in outputs.items():
            result.rows[name] = heights[sid] if sid in heights else cached[sid]["rows"]  # type: ignore[index]
        catalog.finish_build(build_id, "ok")
        result.status = "ok"
        return result
    except KeyboardInterrupt as e:
        catalog.finish_build(build_id, "interrupted", _interrupt_text(e))
        raise
    except BaseException as e:
        catalog.finish_build(build_id, "failed", _error_text(plan, e))
        raise


def _stage_sources(plan: Plan, catalog: Catalog, forced: set[str],
                   progress: Progress) -> dict[str, tuple[int, float]]:
    """Store every `SqlLoad` source to be built straight from its file (ids computed in SQL), before
    the build begins: step id -> (rows, seconds). A file the store's checks stop on is read by the
    careful reader instead: rows it keeps are built like any step's. Should staging not finish (a
    `StepError` naming the bad line, which becomes `_SourceRefused`; Ctrl-C; a fault), what it
    stored is dropped: the build has not begun, so nothing may remain of it."""
    staged: dict[str, tuple[int, float]] = {}
    try:
        for s in plan.order:
            load = plan.prepared.get(s.id)
            if isinstance(load, SqlLoad) and (s.id in forced or not catalog.lookup_output(plan.fingerprints[s.id])):
                _stage_one(plan, catalog, s, load, progress, staged)
    except BaseException as e:
        catalog.drop_staged(plan.fingerprints[s.id] for s in plan.order if s.is_source and s.id in plan.fingerprints)
        if isinstance(e, StepError):
            raise _SourceRefused(plan.locate(e)) from None
        if is_interrupt(e) and not isinstance(e, KeyboardInterrupt):  # DuckDB's, from Ctrl-C
            raise KeyboardInterrupt from None
        raise
    return staged


def _stage_one(plan: Plan, catalog: Catalog, s: Step, load: SqlLoad, progress: Progress,
               staged: dict[str, tuple[int, float]]) -> None:
    import duckdb

    t0 = time.perf_counter()
    mib = max(1, round(load.size / 2**20))
    with progress.task(f"{s.id} ({s.type})", total=mib, unit="MiB", fallback=True) as task:
        def read(fraction: float) -> None:
            task.advance(max(0, round(fraction * mib) - task.done))

        try:
            n = catalog.stage_output_query(plan.fingerprints[s.id], load.query(), progress=read)
        except duckdb.Error as e:
            if is_interrupt(e):
                raise
            n = None
        if n:
            task.advance(mib - task.done)
    if n:
        staged[s.id] = (n, time.perf_counter() - t0)
        return
    # A line the checks stop on, or no rows: the careful reader names it (or accepts the file).
    with catalog.released():
        plan.prepared[s.id] = s.load(plan.context(catalog.path))  # type: ignore[attr-defined]


def _error_text(plan: Plan, e: BaseException) -> str:
    if isinstance(e, StepError):
        return plan.locate(e).render()[:2000]
    if is_interrupt(e):
        return _interrupt_text(e)
    return (str(e) or type(e).__name__)[:2000]


def _interrupt_text(e: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted by the user"


def _check_owners(plan: Plan, catalog: Catalog, take_over: bool) -> None:
    """Refuse to publish over a dataset name that another recipe publishes, unless told to take it over."""
    owners = catalog.dataset_owners(list(plan.recipe.outputs))
    for name, (stored, _) in owners.items():
        if stored != name:  # one view in SQL: `select * from uni` would read whichever was published last
            line, col = plan.positions.find(("outputs", name)) or (None, None)
            raise UserError(f"output {name!r} differs from the catalog's dataset {stored!r} only in case, and SQL "
                            f"names ignore case; name it {stored!r} to publish a new version of it, or pick another "
                            "name", file=str(plan.path), line=line, col=col, path=f"outputs.{name}")
    taken = {n: r for n, (_, r) in owners.items() if r != plan.recipe.name}
    if taken and not take_over:
        name, other = next(iter(taken.items()))
        line, col = plan.positions.find(("outputs", name)) or (None, None)
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise UserError(f"dataset {name!r} is published by recipe {other!r}{more}; rename this output, or "
                        "pass --take-over to make this recipe its publisher (its earlier versions stay)",
                        file=str(plan.path), line=line, col=col, path=f"outputs.{name}")


def _check_accounting(step: Step, res: StepResult, rows_in: int) -> None:
    rej = res.rejections
    n_rej = 0 if rej is None else rej.height
    if rej is not None and n_rej and rej["reason"].null_count():
        raise RowAccountingError(f"step {step.id!r} ({step.type}) rejected rows without a reason")
    expected = step.expected_rows(rows_in, n_rej)
    if expected is not None and res.df.height != expected:
        raise RowAccountingError(
            f"step {step.id!r} ({step.type}) does not account for its rows: {rows_in:,} in, "
            f"{res.df.height:,} out, {n_rej:,} rejected (expected {expected:,} out)")


def _finish_rows(step: Any, res: StepResult) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    df = res.df
    lineage = res.lineage
    if step.new_rows or ID not in df.columns:
        df, derived = assign_ids(df)
        if derived is not None:
            lineage = derived if lineage is None else pl.concat([lineage.select("row_id", "parent_id"), derived])
    elif df.columns[0] != ID:
        df = df.select([ID, *[c for c in df.columns if c != ID]])
    return df, lineage


def _dry_run(plan: Plan, catalog_path: Path, forced: set[str], retry_failed: bool,
             log: Callable[[str], None]) -> BuildResult:
    from dataforge.catalog import query as q

    have = set(q.stored_outputs(catalog_path)) if catalog_path.is_file() else set()
    failed = q.rejection_counts(catalog_path, LLM_ERROR) if have else {}
    forced = set(forced)
    result = BuildResult(build_id=None, status="dry-run")
    width = max(24, *(len(s.id) for s in plan.order))
    for s in plan.order:
        fp = plan.fingerprints[s.id]
        retry = failed.get(fp, 0) if fp in have and s.id not in forced and s.uses_llm() else 0
        if retry and retry_failed:
            forced |= plan.descendants(s.id)
        status = "would-reuse" if fp in have and s.id not in forced else "would-build"
        result.steps.append(StepReport(s.id, s.type, fp, status))
        llm = "  calls an LLM" if s.uses_llm() and status == "would-build" else ""
        if retry:
            llm += (f" (retries {retry:,} that failed)" if retry_failed else
                    f"  ({retry:,} LLM call(s) failed in its last build; --retry-failed asks them again)")
        log(f"  {s.id:<{width}} {status:<12} {s.type}  (fingerprint {fp[:12]}){llm}")
    return result
