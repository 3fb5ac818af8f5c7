"""The Python API. The CLI is a thin layer over these functions; tests call them directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import polars as pl

from dataforge.build import BuildResult, execute
from dataforge.catalog import query as q
from dataforge.catalog.db import default_catalog_path
from dataforge.plan import Plan
from dataforge.recipe.validate import load_recipe


def _catalog(path: str | Path | None) -> Path:
    return Path(path) if path is not None else default_catalog_path()


def validate(recipe: str | Path, *, vars: dict[str, Any] | None = None, catalog: str | Path | None = None) -> Plan:
    """Parse and check a recipe and its DAG without running anything."""
    return load_recipe(recipe, vars, _catalog(catalog))


def build(recipe: str | Path, *, catalog: str | Path | None = None, force: bool = False,
          only: list[str] | None = None, dry_run: bool = False, vars: dict[str, Any] | None = None,
          quiet: bool = True, take_over: bool = False, log: Callable[[str], None] | None = None) -> BuildResult:
    """Validate then build a recipe into the catalog; unchanged steps are reused.

    `take_over` lets this recipe publish dataset names that another recipe published before.
    """
    cat = _catalog(catalog)
    plan = load_recipe(recipe, vars, cat)
    return execute(plan, cat, force=force, only=only, dry_run=dry_run, quiet=quiet, take_over=take_over,
                   log=log or (lambda _msg: None))


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
    return q.show(_catalog(catalog), name, version, limit, columns)


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
    return q.run_select_page(_catalog(catalog), query, limit, allow_files=allow_files)


def history(*, limit: int = 20, build_id: str | None = None, recipe: str | None = None,
            catalog: str | Path | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Recent builds and their steps; only one build (`build_id`) or one recipe's builds (`recipe`)."""
    return q.history(_catalog(catalog), limit, build_id=build_id, recipe=recipe)


def kept_work(pid: int, *, catalog: str | Path | None = None) -> dict[str, Any] | None:
    """The latest build of process `pid` and what it stored (`steps_built`, `rows`), or None."""
    return q.kept_work(_catalog(catalog), pid)


def calls(*, build_id: str | None = None, catalog: str | Path | None = None) -> pl.DataFrame:
    """LLM calls, tokens and cost per build, step and model."""
    return q.calls_summary(_catalog(catalog), build_id)


def write_schema(out: str | Path = "schemas/recipe.schema.json",
                 reference: str | Path | None = "docs/recipe-reference.md") -> list[Path]:
    """Write the JSON Schema of recipes (for editors), of mixture files (`mixture.schema.json` beside
    it) and the Markdown reference; return the paths."""
    from dataforge.export.mixture import schema_json as mixture_schema_json
    from dataforge.recipe.reference import reference_markdown
    from dataforge.recipe.schema import schema_json

    written = []
    mixture_out = Path(out).with_name("mixture.schema.json")
    for path, text in ((out, schema_json), (mixture_out, mixture_schema_json), (reference, reference_markdown)):
        if path is None:
            continue
        path = Path(path)
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
