"""The `dataforge` command: parses flags, calls `dataforge.api`, maps errors to exit codes."""

from __future__ import annotations

import os
import traceback
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import polars as pl
import typer
from rich.console import Console

from dataforge import __version__, api, display
from dataforge.errors import RecipeErrors, UserError

def _words_for_types() -> None:
    """Help names what a value is in words (`FILE`, `N`, `NAME=VALUE`), never a Python type such as
    `<list[str]>`: flags and arguments (whose name already says it) show no type at all."""
    import typer.core as tc

    def option_type(self, ctx):  # type: ignore[no-untyped-def]
        if getattr(self, "is_flag", False) or getattr(self, "is_bool_flag", False):
            return None
        return self.metavar if self.metavar is not None else "VALUE"

    tc.TyperOption.display_type_rich = option_type  # type: ignore[method-assign]
    tc.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    tc.TyperOption._get_number_range_help_str = lambda self: None  # `[x>=0]`: the help says it in words


_words_for_types()

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Declarative dataset construction: YAML recipes compiled into a DuckDB catalog.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_state: dict[str, Any] = {"debug": False, "catalog_for_interrupt": None}
SHOW_ROWS = 20
"""Rows `show` prints in table views unless --limit / --all."""
SQL_ROWS = 50
"""Rows `sql` prints in table views unless --limit / --all (results are often summaries)."""

CatalogOpt = typer.Option(None, "--catalog", metavar="FILE",
                          help="Catalog file (default: $DATAFORGE_CATALOG or catalog/dataforge.duckdb).")


class Format(str, Enum):
    """Output formats of the commands that print rows."""

    table = "table"
    vertical = "vertical"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"


FormatOpt = typer.Option(Format.table, "--format", metavar="FORMAT",
                         help="table | vertical (one block per row) | csv | json | jsonl; "
                              "the last three print every value in full.")
WidthOpt = typer.Option(None, "--max-width", metavar="N", min=0,
                        help=f"Longest cell before it is cut with … (0: no limit; default {display.CELL_WIDTH} "
                             "in table view, no limit in vertical view).")
AllOpt = typer.Option(False, "--all", help="Print every row (no cap).")


def _vars(items: list[str] | None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--var {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        result[k.strip()] = v
    return result


def _run(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except UserError as e:
        # Located errors start with `file:line:col: ` (compiler style, clickable in editors and CI logs).
        text = e.render() if e.file or isinstance(e, RecipeErrors) else f"error: {e.render()}"
        err.print(text, markup=False, highlight=False)
        raise typer.Exit(2)
    except KeyboardInterrupt:
        err.print(_interrupted(), markup=False, highlight=False)
        raise typer.Exit(130)
    except typer.Exit:
        raise
    except Exception as e:  # an internal fault
        if _state["debug"]:
            traceback.print_exc()
        else:
            err.print(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n"
                      "(run with --debug for the traceback)", markup=False, highlight=False)
        raise typer.Exit(1)


def _interrupted() -> str:
    """What an interrupted command kept: for a build, the steps it stored and their rows."""
    kept = None
    if _state.get("catalog_for_interrupt") is not None:
        try:
            kept = api.kept_work(os.getpid(), catalog=_state["catalog_for_interrupt"])
        except Exception:  # the summary is a courtesy; never hide the interrupt behind another error
            kept = None
    if not kept:
        return "interrupted"
    if not kept["steps_built"]:
        return f"interrupted; build {kept['build_id']} had not stored any step yet"
    return (f"interrupted; completed work is kept: build {kept['build_id']} stored {kept['steps_built']:,} "
            f"step(s) ({kept['rows']:,} rows), which the next build reuses")


def _print_df(df: pl.DataFrame, fmt: Format | str = Format.table, title: str | None = None, *,
              total: int | None = None, width: int | None = None) -> None:
    fmt = Format(fmt)
    if width is None:
        width = 0 if fmt is Format.vertical else display.CELL_WIDTH
    display.print_frame(df, fmt.value, out, title=title, total=total, width=width)


def _row_limit(limit: int | None, all_rows: bool, fmt: Format, default: int) -> int | None:
    """Rows to print: `--all` -> every row; `--limit N`; else a cap in table views, every row otherwise."""
    if all_rows:
        if limit is not None:
            raise UserError("give --limit N or --all, not both")
        return None
    if limit is not None:
        return limit
    return default if fmt.value in display.TABLE_FORMATS else None


def _log(message: str) -> None:
    """A build's log line: above the live progress bars when both share the terminal."""
    from dataforge.progress import live_console

    live = live_console()
    (live if live is not None and out.is_terminal else out).print(message, markup=False, highlight=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"dataforge {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the dataforge version and exit.")) -> None:
    _state["debug"] = debug


@app.command()
def build(recipe: Path = typer.Argument(..., metavar="RECIPE", help="Recipe YAML file."),
          catalog: Optional[Path] = CatalogOpt,
          force: bool = typer.Option(False, "--force", help="Rebuild every step."),
          only: Optional[list[str]] = typer.Option(None, "--only", metavar="STEP",
                                                   help="Rebuild this step and its descendants (repeatable)."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show what would run."),
          var: Optional[list[str]] = typer.Option(None, "--var", metavar="NAME=VALUE",
                                                  help="Override a recipe variable (repeatable)."),
          take_over: bool = typer.Option(False, "--take-over",
                                         help="Publish dataset names that another recipe published before."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Build a recipe into the catalog."""
    _state["catalog_for_interrupt"] = catalog if catalog is not None else api.default_catalog()

    def go() -> None:
        res = api.build(recipe, catalog=catalog, force=force, only=only, dry_run=dry_run, vars=_vars(var),
                        quiet=quiet, take_over=take_over, log=_log)
        if res.status == "dry-run":
            return
        built = sum(1 for s in res.steps if s.status == "built")
        reused = sum(1 for s in res.steps if s.status == "reused")
        out.print(f"build {res.build_id}: {built} step(s) built, {reused} reused", highlight=False)
        for name, version in res.datasets.items():
            same = "" if name in res.new_versions else " (unchanged, no new version)"
            out.print(f"  dataset {name} v{version}: {res.rows[name]:,} rows{same}", highlight=False)

    _run(go)


@app.command()
def validate(recipe: Path = typer.Argument(..., metavar="RECIPE", help="Recipe YAML file."),
             catalog: Optional[Path] = CatalogOpt,
             var: Optional[list[str]] = typer.Option(None, "--var", metavar="NAME=VALUE",
                                                     help="Override a recipe variable (repeatable).")) -> None:
    """Check a recipe and its DAG without running anything."""

    def go() -> None:
        plan = api.validate(recipe, vars=_vars(var), catalog=catalog)
        out.print(f"{recipe}: ok ({len(plan.order)} steps, outputs: {', '.join(plan.recipe.outputs) or 'none'})",
                  highlight=False)

    _run(go)


@app.command("ls")
def ls(catalog: Optional[Path] = CatalogOpt, format: Format = FormatOpt) -> None:
    """List datasets: latest version, rows, build time."""
    _run(lambda: _print_df(api.datasets(catalog=catalog), format, title="datasets"))


@app.command()
def show(dataset: str = typer.Argument(..., metavar="DATASET", help="Dataset name (see `dataforge ls`)."),
         version: Optional[int] = typer.Option(None, "--version", metavar="N", min=1,
                                               help="Dataset version (default: the latest)."),
         limit: Optional[int] = typer.Option(None, "--limit", metavar="N", min=0,
                                             help=f"Rows to print (default: {SHOW_ROWS} in table views, "
                                                  "every row in csv/json/jsonl)."),
         all_rows: bool = AllOpt,
         columns: Optional[str] = typer.Option(None, "--columns", metavar="A,B",
                                               help="Only these columns, comma-separated, in this order."),
         format: Format = FormatOpt, max_width: Optional[int] = WidthOpt,
         catalog: Optional[Path] = CatalogOpt) -> None:
    """Show rows of a dataset."""

    def go() -> None:
        n = _row_limit(limit, all_rows, format, SHOW_ROWS)
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns is not None else None
        if cols is not None and not cols:
            raise UserError("--columns: give column names separated by commas, e.g. --columns id,text")
        info = api.dataset_info(dataset, version=version, catalog=catalog)
        df = api.show(dataset, version=info["version"], limit=n, columns=cols, catalog=catalog)
        _print_df(df, format, title=f"{dataset} v{info['version']}", total=info["rows"], width=max_width)

    _run(go)


@app.command()
def sql(query: str = typer.Argument(..., metavar="QUERY",
                                    help="One SELECT over the catalog: datasets by name, and the builds, "
                                         "steps, rejections, lineage and llm_calls tables."),
        catalog: Optional[Path] = CatalogOpt,
        limit: Optional[int] = typer.Option(None, "--limit", metavar="N", min=0,
                                            help=f"Rows to print (default: {SQL_ROWS} in table views, "
                                                 "every row in csv/json/jsonl)."),
        all_rows: bool = AllOpt, format: Format = FormatOpt, max_width: Optional[int] = WidthOpt,
        allow_files: bool = typer.Option(False, "--allow-files",
                                         help="Let the query read files and URLs (read_csv, glob, ...); "
                                              "off by default.")) -> None:
    """Run a read-only SQL query over the catalog."""

    def go() -> None:
        n = _row_limit(limit, all_rows, format, SQL_ROWS)
        df, total = api.sql_page(query, limit=n, catalog=catalog, allow_files=allow_files)
        _print_df(df, format, total=total, width=max_width)

    _run(go)


@app.command()
def history(limit: int = typer.Option(10, "--limit", metavar="N", min=1, help="How many recent builds."),
            build_id: Optional[str] = typer.Option(None, "--build", metavar="ID", help="Only this build."),
            recipe: Optional[str] = typer.Option(None, "--recipe", metavar="NAME",
                                                 help="Only builds of the recipe with this `name:`."),
            format: Format = FormatOpt, catalog: Optional[Path] = CatalogOpt) -> None:
    """Builds with their status, and per-step rows in/out/rejected."""

    def go() -> None:
        builds, steps = api.history(limit=limit, build_id=build_id, recipe=recipe, catalog=catalog)
        _print_df(builds, format, title="builds")
        _print_df(steps.drop("fingerprint"), format, title="steps")

    _run(go)


@app.command()
def calls(build_id: Optional[str] = typer.Option(None, "--build", metavar="ID", help="Only this build."),
          catalog: Optional[Path] = CatalogOpt) -> None:
    """LLM calls, tokens and cost per build, step and model."""
    _run(lambda: _print_df(api.calls(build_id=build_id, catalog=catalog), title="llm calls"))


@app.command()
def schema(out_path: Path = typer.Option(Path("schemas/recipe.schema.json"), "--out", metavar="FILE"),
           reference: Path = typer.Option(Path("docs/recipe-reference.md"), "--reference", metavar="FILE",
                                          help="Where to write the Markdown recipe reference.")) -> None:
    """Write the JSON Schema of recipes (for editor autocompletion) and the recipe reference."""
    _run(lambda: out.print("wrote " + ", ".join(map(str, api.write_schema(out_path, reference))), highlight=False))


@app.command("export")
def export_(mixture: Path = typer.Argument(..., metavar="MIXTURE", help="Mixture YAML file."),
            out_dir: Path = typer.Option(..., "--out", metavar="DIR", help="Output directory (replaced atomically)."),
            format: str = typer.Option("jsonl", "--format", metavar="FORMAT", help="jsonl | parquet | hf"),
            catalog: Optional[Path] = CatalogOpt) -> None:
    """Export a mixture of catalog datasets (rates with caps, templates, split, dedup) with a manifest."""

    def go() -> None:
        res = api.export(mixture, out=out_dir, format=format, catalog=catalog)
        rows = ", ".join(f"{k} {v:,}" for k, v in res.manifest["rows"].items())
        out.print(f"exported {res.manifest['mixture']['name']} to {res.out} ({format}): {rows}", highlight=False)
        for s in res.manifest["sources"]:
            out.print(f"  {s['dataset']}: {s['selected']:,} of {s['rows']:,} rows "
                      f"(cap {s['cap'] if s['cap'] is not None else '-'}, rate {s['rate']:.4f})", highlight=False)

    _run(go)


@app.command("report")
def report(dataset: str = typer.Argument(..., metavar="DATASET", help="Dataset name in the catalog."),
           out_dir: Path = typer.Option(..., "--out", metavar="DIR",
                                        help="Directory for index.html and the sunburst PNG (new, empty, "
                                             "or an earlier report's)."),
           version: Optional[int] = typer.Option(None, "--version", metavar="N", min=1,
                                                 help="Dataset version (default: the latest)."),
           column: Optional[str] = typer.Option(None, "--column", metavar="NAME",
                                                help="Text column to parse when the dataset has no verb/noun columns."),
           catalog: Optional[Path] = CatalogOpt) -> None:
    """Write an offline HTML report: row counts, lengths, rejection reasons, verb-noun sunburst."""

    def go() -> None:
        paths = api.report(dataset, out=out_dir, version=version, column=column, catalog=catalog)
        out.print(f"wrote {paths['html']} and {paths['png']}", highlight=False)

    _run(go)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
