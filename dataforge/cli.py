"""The `dataforge` command: parses flags, calls `dataforge.api`, maps errors to exit codes."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer
from rich.console import Console

from dataforge import __version__, api, display
from dataforge.catalog.db import is_interrupt
from dataforge.errors import RecipeErrors, Terminated, UserError, refused_write

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl


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
                        help=f"Longest text cell before it is cut with … (0: no limit; default {display.CELL_WIDTH} "
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
    except KeyboardInterrupt as e:
        err.print(_interrupted(e), markup=False, highlight=False)
        raise typer.Exit(_interrupt_code())
    except typer.Exit:
        raise
    except BrokenPipeError:  # the reader stopped reading (`| head -1`): nothing is wrong, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        raise typer.Exit(0)
    except Exception as e:  # an internal fault
        if is_interrupt(e):  # Ctrl-C while DuckDB ran a query outside a build step
            err.print(_interrupted(e), markup=False, highlight=False)
            raise typer.Exit(_interrupt_code())
        if (refused := refused_write(e)) is not None:  # a full disk, a read-only folder: the user's to fix
            err.print(f"error: {refused.render()}", markup=False, highlight=False)
            raise typer.Exit(2)
        if _state["debug"]:
            traceback.print_exc()
        else:
            err.print(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n"
                      "(run with --debug for the traceback)", markup=False, highlight=False)
        raise typer.Exit(1)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (`kill PID`, `timeout`, a cancelled CI job) stops a command as Ctrl-C does: the build is
    recorded as interrupted, the LLM answers already received are logged, staging folders removed."""
    _state["signal"] = signum
    raise Terminated


def _interrupt_code() -> int:
    """128 + the signal that stopped the command: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + _state.get("signal", signal.SIGINT)


def _interrupted(e: BaseException | None = None) -> str:
    """What an interrupted command kept: what the command noted on the interrupt (a training run: its
    checkpoints and how to resume), or for a build, the steps it stored and their rows."""
    notes = getattr(e, "__notes__", None)
    if notes:
        return "interrupted; " + "; ".join(notes)
    kept = None
    if _state.get("catalog_for_interrupt") is not None:
        try:
            kept = api.kept_work(os.getpid(), catalog=_state["catalog_for_interrupt"])
        except Exception:  # the summary is a courtesy; never hide the interrupt behind another error
            kept = None
    if not kept:
        return "interrupted"
    answers = (f"; the {kept['answers']:,} LLM answer(s) it got are in the call log, and the next build takes "
               "them from there (they are not paid again)") if kept["answers"] else ""
    if not kept["steps_built"]:
        return f"interrupted; build {kept['build_id']} had not stored any step yet{answers}"
    return (f"interrupted; completed work is kept: build {kept['build_id']} stored {kept['steps_built']:,} "
            f"step(s) ({kept['rows']:,} rows), which the next build reuses{answers}")


def _print_df(df: pl.DataFrame, fmt: Format | str = Format.table, title: str | None = None, *,
              total: int | None = None, width: int | None = None, cut_hint: str = display.CUT_HINT) -> None:
    fmt = Format(fmt)
    if width is None:
        width = 0 if fmt is Format.vertical else display.CELL_WIDTH
    display.print_frame(df, fmt.value, out, title=title, total=total, width=width, cut_hint=cut_hint)


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
          retry_failed: bool = typer.Option(False, "--retry-failed",
                                            help="Ask again the LLM calls that failed in earlier builds (their "
                                                 "steps and the steps reading them build again)."),
          var: Optional[list[str]] = typer.Option(None, "--var", metavar="NAME=VALUE",
                                                  help="Override a recipe variable (repeatable)."),
          take_over: bool = typer.Option(False, "--take-over",
                                         help="Publish dataset names that another recipe published before."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
          executor: Optional[str] = typer.Option(None, "--executor",
                                                 help="local | ray (default: $DATAFORGE_EXECUTOR, the recipe's "
                                                      "executor:, else local)."),
          ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                                    help="Ray cluster to run on, HOST:PORT (default: a local one).")) -> None:
    """Build a recipe into the catalog."""
    _state["catalog_for_interrupt"] = catalog if catalog is not None else api.default_catalog()

    def go() -> None:
        res = api.build(recipe, catalog=catalog, force=force, only=only, dry_run=dry_run, vars=_vars(var),
                        quiet=quiet, take_over=take_over, log=_log, executor=executor, ray_address=ray_address,
                        retry_failed=retry_failed)
        if res.status == "dry-run":
            return
        built = sum(1 for s in res.steps if s.status == "built")
        reused = sum(1 for s in res.steps if s.status == "reused")
        out.print(f"build {res.build_id}: {built} step(s) built, {reused} reused", highlight=False)
        for name, version in res.datasets.items():
            same = ("" if name in res.new_versions else " (no new version: built again, same fingerprint)"
                    if name in res.stored_again else " (unchanged, no new version)")
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
        _print_df(df, format, title=f"{dataset} v{info['version']}", total=info["rows"], width=max_width,
                  cut_hint="--columns A,B or --format vertical shows them whole")

    _run(go)


@app.command()
def sql(query: str = typer.Argument(..., metavar="QUERY",
                                    help="One SELECT over the catalog: datasets by name, and the tables "
                                         "builds, steps, step_outputs, datasets, rejections, lineage, "
                                         "llm_calls, llm_batches, runs and run_losses."),
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
        _print_df(df, format, total=total, width=max_width,
                  cut_hint="select fewer columns, or --format vertical shows them whole")

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
        if format in (Format.csv, Format.json, Format.jsonl):
            display.write_machine_parts({"builds": builds, "steps": steps.drop("fingerprint")}, format.value,
                                        out.file)
            return
        _print_df(builds, format, title="builds")
        # One table per build, titled with its id: a column of 22-character build ids would take a
        # third of an 80-column terminal and be cut to the date they all start with.
        steps = steps.drop("fingerprint")
        for b in builds["build_id"]:
            _print_df(steps.filter(pl.col("build_id") == b).drop("build_id"), format, title=f"steps of build {b}")

    _run(go)


@app.command()
def calls(build_id: Optional[str] = typer.Option(None, "--build", metavar="ID", help="Only this build."),
          format: Format = FormatOpt, catalog: Optional[Path] = CatalogOpt) -> None:
    """LLM calls, tokens and cost per build, step and model."""
    _run(lambda: _print_df(api.calls(build_id=build_id, catalog=catalog), format, title="llm calls"))


@app.command()
def schema(out_path: str = typer.Option("schemas/recipe.schema.json", "--out", metavar="FILE"),
           reference: str = typer.Option("docs/recipe-reference.md", "--reference", metavar="FILE",
                                          help="Where to write the Markdown recipe reference.")) -> None:
    """Write the JSON Schema of recipes (for editor autocompletion) and the recipe reference."""
    _run(lambda: out.print("wrote " + ", ".join(map(str, api.write_schema(out_path, reference))), highlight=False))


@app.command("export")
def export_(mixture: Path = typer.Argument(..., metavar="MIXTURE", help="Mixture YAML file."),
            out_dir: str = typer.Option(..., "--out", metavar="DIR", help="Output directory (replaced atomically)."),
            format: str = typer.Option("jsonl", "--format", metavar="FORMAT", help="jsonl | parquet | hf"),
            catalog: Optional[Path] = CatalogOpt) -> None:
    """Export a mixture of catalog datasets (rates with caps, templates, split, dedup) with a manifest."""

    def go() -> None:
        res = api.export(mixture, out=out_dir, format=format, catalog=catalog)
        rows = ", ".join(f"{k} {v:,}" for k, v in res.manifest.rows.items())
        out.print(f"exported {res.manifest.mixture.name} to {res.out} ({format}): {rows}", highlight=False)
        for s in res.manifest.sources:
            out.print(f"  {s.dataset}: {s.selected:,} of {s.rows:,} rows "
                      f"(cap {s.cap if s.cap is not None else '-'}, rate {s.rate:.4f})", highlight=False)

    _run(go)


@app.command("report")
def report(dataset: str = typer.Argument(..., metavar="DATASET", help="Dataset name in the catalog."),
           out_dir: str = typer.Option(..., "--out", metavar="DIR",
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


# -- runs (training, ranking, evaluation) ----------------------------------------------------------

class RunKind(str, Enum):
    """What `dataforge runs --kind` lists."""

    train = "train"
    rank = "rank"
    eval = "eval"


@app.command("runs")
def runs_(run_id: Optional[str] = typer.Argument(None, help="Show this run (config, data, metrics, losses)."),
          limit: int = typer.Option(20, "--limit", min=1), kind: Optional[RunKind] = typer.Option(None, "--kind",
                                                                                       help="train | rank | eval"),
          config: bool = typer.Option(False, "--config", help="With RUN_ID: print only its config as YAML "
                                      "(save it and pass it to `dataforge train` to repeat the run)."),
          catalog: Optional[Path] = CatalogOpt,
          format: Format = typer.Option(Format.table, "--format", metavar="FORMAT",
                                        help="table | vertical | csv | json | jsonl (with RUN_ID: json, or "
                                             "the record as text)")) -> None:
    """List training / ranking / evaluation runs, or show one."""

    def go() -> None:
        if run_id is None:
            _print_df(api.runs(limit=limit, kind=kind and kind.value, catalog=catalog), format, title="runs")
            return
        rec = api.run_record(run_id, catalog=catalog)
        if config:
            import yaml

            sys.stdout.write(yaml.safe_dump(rec["config"], sort_keys=False, allow_unicode=True))
            return
        losses = rec.pop("losses")
        if format is Format.json:
            sys.stdout.write(json.dumps({**rec, "losses": losses.to_dicts()}, default=str, indent=1) + "\n")
            return
        for k, v in rec.items():
            if k != "config":
                out.print(f"{k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}",
                          markup=False, highlight=False)
        out.print("config:" + (f" (repeat with `dataforge train --repeat {run_id}`)" if rec["kind"] == "train" else ""),
                  highlight=False)
        for line in json.dumps(rec["config"], indent=2, default=str).splitlines():
            out.print("  " + line, markup=False, highlight=False)
        if losses.height:
            _print_df(losses, format, title="losses")

    _run(go)


# -- ranker and evaluation (issue 10) --------------------------------------------------------------------
rank_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The rationale ranker.")
app.add_typer(rank_app, name="rank")


def _print_metrics(metrics: dict[str, Any], keys: list[str]) -> None:
    for k in keys:
        v = metrics.get(k)
        if v is not None:
            out.print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}", highlight=False)


@rank_app.command("train")
def rank_train(data: str = typer.Argument(..., help="Graded rationales: a catalog dataset (NAME or NAME@VERSION) "
                                                     "or an export directory."),
               out_dir: str = typer.Option(..., "--out", metavar="DIR", help="Directory to save the ranker in."),
               split: Optional[str] = typer.Option(None, "--split", help="Export split to read (default: train)."),
               question_column: Optional[str] = typer.Option(None, "--question-column"),
               rationale_column: Optional[str] = typer.Option(None, "--rationale-column"),
               label_column: Optional[str] = typer.Option(None, "--label-column",
                                                          help="positive/negative labels (default: label)."),
               gold_column: Optional[str] = typer.Option(None, "--gold-column",
                                                         help="Gold solutions, added as positives."),
               encoder: Optional[str] = typer.Option(None, "--encoder", help="Sentence-transformers directory "
                                                                             "(default: the bundled MiniLM)."),
               epochs: Optional[int] = typer.Option(None, "--epochs"),
               batch_size: Optional[int] = typer.Option(None, "--batch-size"),
               lr: Optional[float] = typer.Option(None, "--lr", help="Encoder learning rate."),
               head_lr: Optional[float] = typer.Option(None, "--head-lr"),
               freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Train the head only."),
               max_pairs_per_question: Optional[int] = typer.Option(None, "--max-pairs-per-question"),
               validation_fraction: Optional[float] = typer.Option(None, "--validation-fraction"),
               seed: Optional[int] = typer.Option(None, "--seed"),
               device: Optional[str] = typer.Option(None, "--device"),
               catalog: Optional[Path] = CatalogOpt) -> None:
    """Train the (question, rationale) ranker on positive/negative pairs; report validation pairwise accuracy."""

    def go() -> None:
        res = api.rank_train(data, out=out_dir, catalog=catalog, split=split, question_column=question_column,
                             rationale_column=rationale_column, label_column=label_column, gold_column=gold_column,
                             encoder=encoder, epochs=epochs, batch_size=batch_size, lr=lr, head_lr=head_lr,
                             freeze_encoder=freeze_encoder or None, max_pairs_per_question=max_pairs_per_question,
                             validation_fraction=validation_fraction, seed=seed, device=device,
                             log=lambda m: out.print(m, markup=False, highlight=False))
        out.print(f"run {res['run_id']}: ranker saved to {res['out']} ({res['seconds']:.1f} s)", highlight=False)
        _print_metrics(res["metrics"], ["train_pairs", "validation_pairs", "initial_validation_pairwise_accuracy",
                                        "validation_pairwise_accuracy", "validation_loss"])

    _run(go)


@app.command("eval")
def eval_(data: str = typer.Argument(..., help="Questions with gold answers: a catalog dataset or an export directory."),
          out_path: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                                 help="Write the result (with every sample) as JSON."),
          split: Optional[str] = typer.Option(None, "--split"),
          question_column: Optional[str] = typer.Option(None, "--question-column"),
          gold_column: Optional[str] = typer.Option(None, "--gold-column"),
          gold_is_rationale: bool = typer.Option(False, "--gold-is-rationale",
                                                 help="Extract the gold answer from a worked solution."),
          limit: Optional[int] = typer.Option(None, "--limit"),
          k: Optional[int] = typer.Option(None, "--k", help="Samples per question (default 16)."),
          temperature: Optional[float] = typer.Option(None, "--temperature"),
          top_p: Optional[float] = typer.Option(None, "--top-p"),
          max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
          no_greedy: bool = typer.Option(False, "--no-greedy", help="Skip the greedy sample."),
          prompt: Optional[str] = typer.Option(None, "--prompt", help="Jinja template of the prompt."),
          style: Optional[str] = typer.Option(None, "--style", help="chat | completion"),
          system_prompt: Optional[str] = typer.Option(None, "--system-prompt"),
          extractor: Optional[str] = typer.Option(None, "--extractor", help="gsm8k | boxed | answer_is | last_number"),
          model: Optional[str] = typer.Option(None, "--model", help=".gguf file or Hugging Face model directory."),
          adapter: Optional[str] = typer.Option(None, "--adapter", help="peft adapter directory."),
          backend: Optional[str] = typer.Option(None, "--backend", help="auto | llama.cpp | transformers"),
          ranker: Optional[str] = typer.Option(None, "--ranker", help="Ranker directory (enables ASC)."),
          seed: Optional[int] = typer.Option(None, "--seed"),
          batch_size: Optional[int] = typer.Option(None, "--batch-size"),
          device: Optional[str] = typer.Option(None, "--device"),
          catalog: Optional[Path] = CatalogOpt) -> None:
    """Sample k rationales per question; report self-consistency, adaptive self-consistency, greedy and ranker accuracy."""

    def go() -> None:
        res = api.evaluate(data, out=out_path, catalog=catalog, split=split, question_column=question_column,
                           gold_column=gold_column, gold_is_rationale=gold_is_rationale or None, limit=limit, k=k,
                           temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                           greedy=False if no_greedy else None, prompt=prompt, style=style,
                           system_prompt=system_prompt, extractor=extractor, model=model, adapter=adapter,
                           backend=backend, ranker=ranker, seed=seed, batch_size=batch_size, device=device,
                           log=lambda m: out.print(m, markup=False, highlight=False))
        out.print(f"run {res['run_id']}: {res['metrics']['questions']} questions ({res['seconds']:.1f} s)"
                  + (f", written to {out_path}" if out_path else ""), highlight=False)
        _print_metrics(res["metrics"], ["sc", "asc_1+2s", "asc_1+s", "asc_s", "ranker", "greedy", "any_correct"])

    _run(go)


@app.command("train")
def train_(config: Optional[Path] = typer.Argument(None, help="Train config YAML (see docs/train.md)."),
           catalog: Optional[Path] = CatalogOpt,
           resume: bool = typer.Option(False, "--resume", help="Continue the unfinished run in output_dir from "
                                       "its last checkpoint."),
           repeat: Optional[str] = typer.Option(None, "--repeat", help="Repeat a recorded run (RUN_ID) from its "
                                                "stored config; needs --out."),
           out_dir: Optional[str] = typer.Option(None, "--out", metavar="DIR", help="Override output_dir.")) -> None:
    """Train a LoRA adapter (sft, nat or nce) on an export or a catalog dataset; records a run."""

    def go() -> None:
        res = api.train(config, catalog=catalog, resume=resume, repeat=repeat, output_dir=out_dir,
                        log=lambda m: out.print(m, markup=False, highlight=False))
        shown = {k: v for k, v in res.metrics.items() if k.endswith(("loss", "tokens_per_s"))}
        out.print(f"run {res.run_id}: adapter {res.adapter_path}; "
                  + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()),
                  markup=False, highlight=False)

    _run(go)


@app.command("eval-classification")
def eval_classification(
        data: str = typer.Argument(..., help="Classification prompts: a catalog dataset or an export directory."),
        out_path: Optional[str] = typer.Option(None, "--out", metavar="FILE",
                                               help="Write the result (with every prediction) as JSON."),
        split: Optional[str] = typer.Option(None, "--split"),
        prompt_column: Optional[str] = typer.Option(None, "--prompt-column"),
        target_column: Optional[str] = typer.Option(None, "--target-column"),
        labels_column: Optional[str] = typer.Option(None, "--labels-column",
                                                    help="Per-row label set (default: symbol_map when present)."),
        labels: Optional[str] = typer.Option(None, "--labels", help="One label set for all rows: a,b,c"),
        limit: Optional[int] = typer.Option(None, "--limit"),
        model: Optional[str] = typer.Option(None, "--model", help="Hugging Face model directory or .gguf file."),
        adapter: Optional[str] = typer.Option(None, "--adapter", help="peft adapter directory."),
        separator: Optional[str] = typer.Option(None, "--separator", help="Between prompt and label (default: a space "
                                                                          "unless the prompt ends in whitespace)."),
        chat: bool = typer.Option(False, "--chat", help="Use the tokenizer's chat template."),
        system_prompt: Optional[str] = typer.Option(None, "--system-prompt"),
        score: Optional[str] = typer.Option(None, "--score", help="sum | mean"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size"),
        device: Optional[str] = typer.Option(None, "--device"),
        catalog: Optional[Path] = CatalogOpt) -> None:
    """Accuracy on classification prompts, answers constrained to the label set by log-likelihood."""

    def go() -> None:
        label_list = [x.strip() for x in labels.split(",")] if labels else None
        res = api.evaluate_classification(
            data, out=out_path, catalog=catalog, split=split, prompt_column=prompt_column, target_column=target_column,
            labels_column=labels_column, labels=label_list, limit=limit, model=model, adapter=adapter,
            separator=separator, chat=chat or None, system_prompt=system_prompt, score=score, batch_size=batch_size,
            device=device, log=lambda m: out.print(m, markup=False, highlight=False))
        m = res["metrics"]
        out.print(f"run {res['run_id']}: accuracy {m['accuracy']:.4f} ({m['correct']}/{m['rows']}), "
                  f"chance {m['chance']:.4f}, {res['seconds']:.1f} s"
                  + (f", written to {out_path}" if out_path else ""), highlight=False)
        for task, t in m["by_task"].items():
            out.print(f"  {task}: {t['accuracy']:.4f} of {t['rows']}", highlight=False)

    _run(go)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
