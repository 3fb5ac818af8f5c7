"""The Python API. The CLI is a thin layer over these functions; tests call them directly."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dataforge.catalog import query as q
from dataforge.catalog.db import default_catalog_path

# Recipes, plans and the build (pydantic and every step kind's base, ~0.25 s) are imported by the
# functions that use them: `dataforge ls`, `show` and `sql` never need them.
if TYPE_CHECKING:
    import polars as pl

    from dataforge.build import BuildResult
    from dataforge.plan import Plan
else:
    from dataforge.lazy import polars as pl


def _catalog(path: str | Path | None) -> Path:
    return Path(path) if path is not None else default_catalog_path()


def _limit(limit: int | None, least: int) -> int | None:
    """A row/build limit, refused below `least` (DuckDB would fail on a negative LIMIT)."""
    from dataforge.errors import UserError

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < least):
        raise UserError(f"limit must be an integer of at least {least}, not {limit!r}")
    return limit


def validate(recipe: str | Path, *, vars: dict[str, Any] | None = None, catalog: str | Path | None = None) -> Plan:
    """Parse and check a recipe and its DAG without running anything."""
    from dataforge.recipe.validate import load_recipe

    return load_recipe(recipe, vars, _catalog(catalog))


def build(recipe: str | Path, *, catalog: str | Path | None = None, force: bool = False,
          only: list[str] | None = None, dry_run: bool = False, vars: dict[str, Any] | None = None,
          quiet: bool = True, take_over: bool = False, log: Callable[[str], None] | None = None,
          executor: str | None = None, ray_address: str | None = None, retry_failed: bool = False) -> BuildResult:
    """Validate then build a recipe into the catalog; unchanged steps are reused.

    `retry_failed` asks again the LLM calls that failed (after their retries) in earlier builds: their
    steps build again, with the steps that read them; the call log answers the calls that succeeded.

    `take_over` lets this recipe publish dataset names that another recipe published before.
    `executor` (`local` | `ray`; default `$DATAFORGE_EXECUTOR`, else the recipe's `executor:`, else local)
    decides where steps run; `ray_address` names the Ray cluster (default: start a local one).
    """
    from dataforge.build import execute
    from dataforge.executors.base import check_executor, open_executor, resolve_executor
    from dataforge.recipe.validate import load_recipe

    cat = _catalog(catalog)
    plan = load_recipe(recipe, vars, cat, for_build=not dry_run)
    name = resolve_executor(executor, plan.recipe.executor)
    check_executor(name)
    if dry_run:
        return execute(plan, cat, force=force, only=only, dry_run=True, quiet=quiet, retry_failed=retry_failed,
                       log=log or (lambda _m: None))
    runner = open_executor(name, ray_address)
    try:
        return execute(plan, cat, force=force, only=only, dry_run=dry_run, quiet=quiet, take_over=take_over,
                       retry_failed=retry_failed, log=log or (lambda _msg: None), executor=runner)
    finally:
        runner.close()


def datasets(catalog: str | Path | None = None) -> pl.DataFrame:
    """Every dataset with its latest version, rows and build."""
    return q.list_datasets(_catalog(catalog))


def default_catalog() -> Path:
    """The catalog used when none is given: `$DATAFORGE_CATALOG`, else `catalog/dataforge.duckdb`."""
    return default_catalog_path()


def dataset_info(name: str, *, version: int | None = None, catalog: str | Path | None = None) -> dict[str, Any]:
    """One dataset version's catalog record (latest unless `version`): name, version, rows, build_id, ..."""
    return q.dataset_record(_catalog(catalog), name, version)


def show(name: str, *, version: int | None = None, limit: int | None = 20, columns: list[str] | None = None,
         catalog: str | Path | None = None) -> pl.DataFrame:
    """The first `limit` rows (all when None) of a dataset (latest version unless `version`),
    optionally only `columns`."""
    return q.show(_catalog(catalog), name, version, _limit(limit, 0), columns)


def read(name: str, *, version: int | None = None, catalog: str | Path | None = None) -> pl.DataFrame:
    """A whole dataset as a polars DataFrame."""
    return q.read_dataset(_catalog(catalog), name, version)


def sql(query: str, *, catalog: str | Path | None = None, allow_files: bool = False) -> pl.DataFrame:
    """Run one read-only SQL statement over the catalog. Files and URLs are unreachable from the
    query unless `allow_files`."""
    return q.run_select(_catalog(catalog), query, allow_files=allow_files)


def sql_page(query: str, *, limit: int | None, catalog: str | Path | None = None,
             allow_files: bool = False) -> tuple[pl.DataFrame, int]:
    """Like `sql`, but only the first `limit` rows (all when None), and how many rows the result has."""
    return q.run_select_page(_catalog(catalog), query, _limit(limit, 0), allow_files=allow_files)


def history(*, limit: int = 20, build_id: str | None = None, recipe: str | None = None,
            catalog: str | Path | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Recent builds and their steps; only one build (`build_id`) or one recipe's builds (`recipe`)."""
    return q.history(_catalog(catalog), _limit(limit, 1), build_id=build_id, recipe=recipe)


def kept_work(pid: int, *, catalog: str | Path | None = None) -> dict[str, Any] | None:
    """The latest build of process `pid` and what it kept (`steps_built`, `rows`, LLM `answers`), or None."""
    return q.kept_work(_catalog(catalog), pid)


def calls(*, build_id: str | None = None, catalog: str | Path | None = None) -> pl.DataFrame:
    """LLM calls, tokens and cost per build, step and model."""
    return q.calls_summary(_catalog(catalog), build_id)


def write_schema(out: str | Path = "schemas/recipe.schema.json",
                 reference: str | Path | None = "docs/recipe-reference.md") -> list[Path]:
    """Write the JSON Schema of recipes (for editors), of mixture files (`mixture.schema.json` beside
    it), of train configs (`train.schema.json`) and the Markdown reference; return the paths."""
    from dataforge.recipe.reference import reference_markdown
    from dataforge.recipe.schema import SCHEMAS, schema_json

    from dataforge.outdir import out_file

    out = out_file(out, "JSON Schema", example="recipe.schema.json")
    targets: list[tuple[Path | None, Callable[[], str]]] = [(out, schema_json)]
    targets += [(out.with_name(SCHEMAS[kind][0]), functools.partial(schema_json, kind))
                for kind in ("mixture", "train")]
    targets.append((None if reference is None else
                    out_file(reference, "recipe reference", flag="--reference", example="recipe-reference.md"),
                    reference_markdown))
    written = []
    for path, text in targets:
        if path is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text(), encoding="utf-8")
        written.append(path)
    return written


def export(mixture: str | Path, *, out: str | Path, format: str = "jsonl", catalog: str | Path | None = None):
    """Export a mixture file's catalog datasets to `out` (jsonl | parquet | hf) with `manifest.json`.

    Returns an `ExportResult` (`out`, `manifest`). The catalog is only read.
    """
    from dataforge.export.run import export as run_export

    return run_export(mixture, out, format, _catalog(catalog))


def report(dataset: str, *, out: str | Path, version: int | None = None, column: str | None = None,
           catalog: str | Path | None = None) -> dict[str, Path]:
    """Write an offline HTML report (and the verb-noun sunburst PNG) for a dataset into `out`.

    Returns `{"html": path, "png": path}`. The catalog is only read.
    """
    from dataforge.report import write_report

    return write_report(_catalog(catalog), dataset, out, version=version, column=column)


# -- runs (training, ranking, evaluation) ----------------------------------------------------------

def runs(*, limit: int = 50, kind: str | None = None, catalog: str | Path | None = None) -> pl.DataFrame:
    """Recent training / ranking / evaluation runs, newest first."""
    return q.list_runs(_catalog(catalog), _limit(limit, 1), kind)


def run_record(run_id: str, *, catalog: str | Path | None = None) -> dict[str, Any]:
    """One run's stored record: config (repeatable), data, base model and hash, metrics, `losses` frame."""
    return q.run_record(_catalog(catalog), run_id)


def train(config: str | Path | None = None, *, catalog: str | Path | None = None, resume: bool = False,
          repeat: str | None = None, output_dir: str | Path | None = None,
          log: Callable[[str], None] | None = None):
    """Run `dataforge train`: a config file, or `repeat` a recorded run (into `output_dir`).

    Returns a `TrainResult` (`run_id`, `output_dir`, `adapter_path`, `metrics`). Needs the `train` extra.
    """
    from dataforge.errors import UserError
    from dataforge.outdir import out_path
    from dataforge.train import deps

    if output_dir is not None:
        output_dir = out_path(output_dir, "training run")
    deps.require()
    from dataforge.train.config import config_from_record, load_config
    from dataforge.train.run import run_training

    cat = _catalog(catalog)
    expect = None
    if repeat is not None:
        if config is not None:
            raise UserError("give a config file or --repeat RUN_ID, not both")
        rec = q.run_record(cat, repeat)
        if rec["kind"] != "train":
            raise UserError(f"run {repeat} is a {rec['kind']} run; `dataforge train --repeat` repeats train runs")
        if output_dir is None:
            raise UserError(f"--repeat {repeat}: give --out DIR for the new run (its own output_dir, "
                            f"{rec['output_dir']}, holds the recorded run)")
        cf = config_from_record({**rec["config"], "output_dir": str(Path(output_dir).resolve())}, repeat)
        expect = rec["data"]
    elif config is None:
        raise UserError("give a train config file (or --repeat RUN_ID)")
    else:
        cf = load_config(config)
        if output_dir is not None:
            cf.config.output_dir = str(Path(output_dir).resolve())
    return run_training(cf, catalog=cat, resume=resume, repeat_of=repeat, expect_data=expect,
                        log=log or (lambda _m: None))


# -- ranker and evaluation (issue 10: `rank train`, `eval`, `eval-classification`) -----------------------
def rank_train(data: str, *, out: str | Path, catalog: str | Path | None = None,
               log: Callable[[str], None] | None = None, **options: Any) -> dict[str, Any]:
    """Train the rationale ranker on graded rationales (`data`: a catalog dataset or an export directory),
    save it to `out` and record a `runs` row. `options`: the fields of `dataforge.train.rank_train.RankerConfig`.
    Returns `{run_id, out, metrics, seconds}`."""
    from dataforge.train.options import from_flags
    from dataforge.train.rank_train import RankerConfig
    from dataforge.train.rank_train import rank_train as run

    from dataforge.outdir import out_path

    return run(from_flags(RankerConfig, data=data, **options), out=out_path(out, "ranker"), catalog=_catalog(catalog),
               log=log or (lambda _m: None))


def evaluate(data: str, *, out: str | Path | None = None, catalog: str | Path | None = None,
             log: Callable[[str], None] | None = None, **options: Any) -> dict[str, Any]:
    """Sample k rationales per question and report self-consistency, adaptive self-consistency (with a
    ranker), greedy and ranker accuracy; `options`: the fields of `dataforge.train.evaluate.EvalConfig`.
    Writes `out` (JSON) when given and a `runs` row; returns the result."""
    from dataforge.outdir import out_file
    from dataforge.train.evaluate import EvalConfig, run_eval
    from dataforge.train.options import from_flags

    out = None if out is None else out_file(out, "eval result")
    return run_eval(from_flags(EvalConfig, data=data, **options), catalog=_catalog(catalog),
                    out=out, log=log or (lambda _m: None))


def evaluate_classification(data: str, *, out: str | Path | None = None, catalog: str | Path | None = None,
                            log: Callable[[str], None] | None = None, **options: Any) -> dict[str, Any]:
    """Accuracy on classification prompts, the answer being the label of highest log-likelihood;
    `options`: the fields of `dataforge.train.clf_run.ClfEvalConfig`. Writes `out` (JSON) when given and
    a `runs` row; returns the result."""
    from dataforge.outdir import out_file
    from dataforge.train.clf_run import ClfEvalConfig, run_classification_eval
    from dataforge.train.options import from_flags

    out = None if out is None else out_file(out, "eval result")
    return run_classification_eval(from_flags(ClfEvalConfig, data=data, **options), catalog=_catalog(catalog),
                                   out=out, log=log or (lambda _m: None))
