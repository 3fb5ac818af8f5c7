"""Run a validated plan: reuse unchanged steps, run the rest, store outputs, publish datasets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

from dataforge.catalog.store import Catalog
from dataforge.errors import UserError
from dataforge.fingerprint import step_fingerprint
from dataforge.progress import Progress
from dataforge.recipe.validate import Plan
from dataforge.rows import assign_ids
from dataforge.steps.base import ID, PlanContext, RunContext, StepError, StepResult


@dataclass
class StepReport:
    step_id: str
    type: str
    fingerprint: str
    status: str  # built | reused | would-build | would-reuse | failed
    rows_in: int | None = None
    rows_out: int | None = None
    rejected: int | None = None
    seconds: float = 0.0


@dataclass
class BuildResult:
    build_id: str | None
    status: str
    steps: list[StepReport] = field(default_factory=list)
    datasets: dict[str, int] = field(default_factory=dict)  # name -> version
    rows: dict[str, int] = field(default_factory=dict)  # name -> rows


def fingerprints(plan: Plan, ctx: PlanContext) -> dict[str, str]:
    fps: dict[str, str] = {}
    for s in plan.order:
        try:
            fps[s.id] = step_fingerprint(s, ctx, [fps[p] for p in plan.inputs[s.id]])
        except StepError as e:
            raise plan.locate(e) from None
    return fps


def execute(plan: Plan, catalog_path: Path, *, force: bool = False, only: list[str] | None = None,
            dry_run: bool = False, quiet: bool = False, log: Callable[[str], None] = print) -> BuildResult:
    """Build every step the outputs need; see `dataforge.api.build` for the public entry point."""
    recipe = plan.recipe
    pctx = PlanContext(recipe_path=plan.path, seed=recipe.seed, catalog_path=catalog_path, llm=recipe.llm)
    fps = fingerprints(plan, pctx)

    forced: set[str] = set()
    if force:
        forced = {s.id for s in plan.order}
    for sid in only or []:
        if sid not in plan.index:
            raise UserError(f"--only {sid!r}: no such step; steps: {', '.join(plan.index)}")
        forced |= plan.descendants(sid)

    if dry_run:
        return _dry_run(plan, catalog_path, fps, forced, log)

    catalog = Catalog(catalog_path)
    build_id = catalog.begin_build(recipe.name, str(plan.path), plan.sha256)
    result = BuildResult(build_id=build_id, status="running")
    frames: dict[str, pl.DataFrame] = {}
    cached: dict[str, dict[str, Any] | None] = {}

    def frame(sid: str) -> pl.DataFrame:
        if sid not in frames:
            frames[sid] = catalog.load_output(fps[sid])
        return frames[sid]

    try:
        with Progress(quiet=quiet) as progress:
            for s in plan.order:
                fp = fps[s.id]
                hit = None if s.id in forced else catalog.lookup_output(fp)
                cached[s.id] = hit
                if hit is not None:
                    catalog.record_step(build_id=build_id, step_id=s.id, type=s.type, fingerprint=fp,
                                        rows_in=hit["rows_in"], rows_out=hit["rows"], rejected=hit["rejected"],
                                        seconds=0.0, status="reused")
                    result.steps.append(StepReport(s.id, s.type, fp, "reused", hit["rows_in"], hit["rows"],
                                                   hit["rejected"]))
                    log(f"  {s.id:<24} reused   {hit['rows']:>9,} rows  (unchanged, fingerprint {fp[:12]})")
                    continue
                ins = [frame(p) for p in plan.inputs[s.id]]
                rows_in = sum(df.height for df in ins)
                ctx = RunContext(recipe_path=plan.path, seed=recipe.seed, catalog_path=catalog_path,
                                 llm=recipe.llm, step_id=s.id, build_id=build_id, fingerprint=fp,
                                 catalog=catalog, progress=progress, log=log)
                t0 = time.perf_counter()
                try:
                    out = s.run(ins, ctx)
                except StepError as e:
                    raise plan.locate(e) from None
                res = out if isinstance(out, StepResult) else StepResult(df=out)
                df, lineage = _finish_rows(s, res)
                seconds = time.perf_counter() - t0
                catalog.save_step_output(build_id=build_id, step_id=s.id, type=s.type, fingerprint=fp, df=df,
                                         rows_in=rows_in, seconds=seconds, rejections=res.rejections,
                                         lineage=lineage)
                frames[s.id] = df
                n_rej = 0 if res.rejections is None else res.rejections.height
                result.steps.append(StepReport(s.id, s.type, fp, "built", rows_in, df.height, n_rej, seconds))
                rej = f", {n_rej:,} rejected" if n_rej else ""
                log(f"  {s.id:<24} built    {df.height:>9,} rows  ({seconds:.2f}s{rej})")
        outputs = {name: (sid, fps[sid]) for name, sid in recipe.outputs.items()}
        result.datasets = catalog.publish(build_id, outputs)
        for name, (sid, _) in outputs.items():
            result.rows[name] = frames[sid].height if sid in frames else cached[sid]["rows"]  # type: ignore[index]
        catalog.finish_build(build_id, "ok")
        result.status = "ok"
        return result
    except KeyboardInterrupt:
        catalog.finish_build(build_id, "interrupted", "interrupted by the user")
        raise
    except BaseException as e:
        catalog.finish_build(build_id, "failed", str(e)[:2000])
        raise


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


def _dry_run(plan: Plan, catalog_path: Path, fps: dict[str, str], forced: set[str],
             log: Callable[[str], None]) -> BuildResult:
    from dataforge.catalog import query as q

    have: set[str] = set()
    if catalog_path.exists():
        df = q.run_select(catalog_path, "select fingerprint from step_outputs")
        have = set(df["fingerprint"].to_list()) if df.height else set()
    result = BuildResult(build_id=None, status="dry-run")
    for s in plan.order:
        status = "would-reuse" if fps[s.id] in have and s.id not in forced else "would-build"
        result.steps.append(StepReport(s.id, s.type, fps[s.id], status))
        log(f"  {s.id:<24} {status:<12} {s.type}  (fingerprint {fps[s.id][:12]})")
    return result
