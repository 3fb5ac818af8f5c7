"""Side-by-side: a 1,000,000-row JSONL, CSV and Parquet file read, columns selected/renamed, stored — dataforge vs 🤗 datasets.

    .venv/bin/python benchmarks/jsonl_to_catalog.py [--rows 1000000] [--repeats 3] [--formats jsonl,csv,parquet]
                                                    [--baseline CHECKOUT]

For each format:
(a) `dataforge build` of a recipe with one source step (`source.jsonl` / `source.csv` / `source.parquet`,
    `columns:` select + rename) into a fresh catalog: parse, validate, content-hash row ids, store as a
    versioned catalog dataset.
(b) `datasets.load_dataset("json" / "csv" / "parquet", data_files=...)` + `select_columns` + `rename_column`
    + `save_to_disk`, with a fresh HF cache dir each run so nothing is reused.

(c) The floor of (a)'s approach: DuckDB alone, in a bare process (no dataforge, no recipe, no
    fingerprint, no catalog tables), running the exact store query (a) runs, with the same
    connection settings: once with the row ids, once without them. What (a) spends above the
    first is dataforge's own cost; the gap between the two is the cost of the content-hash ids.
(d) With `--baseline`: (a) once more with an earlier checkout's dataforge, so that a change is
    measured before against after in the same runs.

Each run is its own fresh process (startup included), the two sides interleaved so machine noise hits
both alike, after one untimed run of each (it writes the bytecode caches an installed package has and
reads the input into the page cache); peak memory is that process's max RSS (`os.wait4`). Reported as ratios dataforge / datasets
(time: median over repeats; memory: the largest peak of each side). Writes
benchmarks/results/jsonl_to_catalog.json. The generated inputs live in benchmarks/_work/ (ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
RESULTS = HERE / "results" / "jsonl_to_catalog.json"

WORDS = ["explain", "write", "summarize", "translate", "list", "compare", "why", "how", "poem", "recipe",
         "données", "über", "naïve", "café", "数据", "学习", "данные", "🙂", "🚀", "—"]

RECIPE = """
name: bench-{fmt}
steps:
  - id: rows
    type: source.{fmt}
    path: {data}
    columns:
      prompt: instruction
      completion: output
      lang: lang
outputs:
  bench_rows: rows
"""

DATAFORGE = """
import sys
from dataforge.cli import main
sys.argv = ["dataforge", "build", sys.argv[1], "--catalog", sys.argv[2], "--quiet"]
main()
"""

# The store (a) runs, alone: the catalog's write-connection settings (its row group size, argv[3],
# comes from dataforge.catalog.db) and its staging memory limit.
FLOOR = """
import sys
import duckdb
con = duckdb.connect(":memory:", config={"write_buffer_row_group_count": 1, "max_vacuum_tasks": 0,
                                         "temp_directory": sys.argv[1] + ".tmp"})
path = "'" + sys.argv[1].replace("'", "''") + "'"
con.execute(f"attach {path} as c (row_group_size {int(sys.argv[3])})")
con.execute("use c")
con.execute("set force_compression = 'zstd'")
con.execute("set memory_limit = '256MB'")
con.execute("create table t as " + open(sys.argv[2], encoding="utf-8").read())
print(con.execute("select count(*) from t").fetchone()[0])
con.close()
"""

HF = """
import sys
import datasets
datasets.disable_progress_bars()
builder, data, cache, out = sys.argv[1:5]
ds = datasets.load_dataset(builder, data_files=data, split="train", cache_dir=cache)
ds = ds.select_columns(["instruction", "output", "lang"])
ds = ds.rename_column("instruction", "prompt").rename_column("output", "completion")
ds.save_to_disk(out)
print(ds.num_rows)
"""


def make_input(rows: int) -> Path:
    path = WORK / f"rows_{rows}.jsonl"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in range(rows):
            words = rng.choices(WORDS, k=rng.randint(4, 30))
            fh.write(json.dumps({
                "instruction": " ".join(words[: len(words) // 2]) + f" #{i}",
                "input": "" if i % 3 else " ".join(rng.choices(WORDS, k=8)),
                "output": " ".join(words[len(words) // 2:]),
                "lang": rng.choice(["en", "fr", "de", "zh", "ru"]),
                "score": round(rng.random(), 4),
                "n": i,
            }, ensure_ascii=False) + "\n")
    tmp.rename(path)
    return path


# Children may write bytecode caches even where this shell forbids it: both sides then start as an
# installed package does (pip compiles site-packages; an editable checkout compiles on first import).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(args: list[str], code: Path | None = None) -> tuple[float, float, float, str]:
    """Run a process; return (wall seconds, CPU seconds, peak RSS in MiB, stdout+stderr). `code`: a
    checkout whose `dataforge` the process imports instead of this one's."""
    env, cwd = CHILD_ENV, None
    if code is not None:  # outside the repo, so that `python -c` does not find this checkout's first
        env, cwd = {**CHILD_ENV, "PYTHONPATH": str(code)}, WORK
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{args[:3]} failed ({proc.returncode}):\n{out}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def make_format(jsonl: Path, fmt: str) -> Path:
    """The same rows as CSV or Parquet (written once, from the JSONL, by polars)."""
    if fmt == "jsonl":
        return jsonl
    path = jsonl.with_suffix("." + fmt)
    if not path.exists():
        # In a child process: this one stays small, and every run it starts inherits its peak RSS
        # at fork time (Linux keeps ru_maxrss across fork and exec).
        tmp = path.with_suffix(".tmp")
        code = ("import sys, polars as pl; df = pl.read_ndjson(sys.argv[1]); "
                "df.write_csv(sys.argv[2]) if sys.argv[3] == 'csv' else df.write_parquet(sys.argv[2])")
        subprocess.run([sys.executable, "-c", code, str(jsonl), str(tmp), fmt], check=True)
        tmp.rename(path)
    return path


BUILDERS = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}


Run = tuple[float, float, float, float]
"""(wall seconds, CPU seconds, peak RSS MiB, MiB left on disk: the catalog, or the saved dataset + cache)."""


def disk_mib(d: Path) -> float:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) / 2**20


def run_dataforge(fmt: str, data: Path, i: int, code: Path | None = None) -> Run:
    d = WORK / f"df_{fmt}_{i}{'_baseline' if code else ''}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    recipe = d / "recipe.yaml"
    recipe.write_text(RECIPE.format(fmt=fmt, data=data), encoding="utf-8")
    s, cpu, mib, out = timed([sys.executable, "-c", DATAFORGE, str(recipe), str(d / "catalog.duckdb")], code)
    assert "dataset bench_rows v1" in out, out
    disk = disk_mib(d)
    shutil.rmtree(d, ignore_errors=True)
    return s, cpu, mib, disk


def store_queries(fmt: str, data: Path) -> dict[str, str]:
    """The store query a build of (a)'s recipe runs, with and without the row ids (planned here, untimed)."""
    from dataforge.recipe.validate import load_recipe
    from dataforge.steps.sources.base import SqlLoad

    d = WORK / f"plan_{fmt}"
    d.mkdir(parents=True, exist_ok=True)
    recipe = d / "recipe.yaml"
    recipe.write_text(RECIPE.format(fmt=fmt, data=data), encoding="utf-8")
    load = load_recipe(recipe, for_build=True).prepared["rows"]
    if not isinstance(load, SqlLoad):
        raise SystemExit(f"{fmt}: the build would not store this file straight from SQL")
    out = {}
    for name, query in (("duckdb_alone_ids", load.query()), ("duckdb_alone_no_ids", load.select)):
        (d / f"{name}.sql").write_text(query, encoding="utf-8")
        out[name] = str(d / f"{name}.sql")
    return out


def run_floor(query_file: str, fmt: str, i: int) -> Run:
    d = WORK / f"floor_{fmt}_{i}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    from dataforge.catalog.db import ROW_GROUP_ROWS

    s, cpu, mib, _ = timed([sys.executable, "-c", FLOOR, str(d / "t.duckdb"), query_file, str(ROW_GROUP_ROWS)])
    disk = disk_mib(d)
    shutil.rmtree(d, ignore_errors=True)
    return s, cpu, mib, disk


def run_hf(fmt: str, data: Path, i: int) -> Run:
    d = WORK / f"hf_{fmt}_{i}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    s, cpu, mib, _ = timed([sys.executable, "-c", HF, BUILDERS[fmt], str(data), str(d / "cache"), str(d / "out")])
    disk = disk_mib(d)
    shutil.rmtree(d, ignore_errors=True)
    return s, cpu, mib, disk


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("dataforge", "datasets", "duckdb", "polars", "pyarrow")}


def summarize(runs: list[Run]) -> dict:
    return {"seconds_median": round(statistics.median(r[0] for r in runs), 2),
            "seconds_all": [round(r[0], 2) for r in runs],
            "cpu_seconds_median": round(statistics.median(r[1] for r in runs), 2),
            "peak_rss_mib_max": round(max(r[2] for r in runs), 1),
            "disk_mib": round(max(r[3] for r in runs), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--formats", default="jsonl,csv,parquet", help="comma-separated: jsonl, csv, parquet")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="also build with the dataforge of another checkout (`git worktree add /tmp/base "
                         "<commit>`), interleaved with the rest: a change measured before against after")
    args = ap.parse_args()
    if args.baseline is not None and not (args.baseline / "dataforge" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: not a dataforge checkout (no dataforge/__init__.py)")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown format(s) {unknown}; choose from {', '.join(BUILDERS)}")

    jsonl = make_input(args.rows)
    results: dict[str, dict] = {}
    for fmt in formats:
        data = make_format(jsonl, fmt)
        print(f"{fmt}: {data} ({data.stat().st_size / 2**20:.0f} MiB, {args.rows:,} rows)", flush=True)
        queries = store_queries(fmt, data)
        sides = {"dataforge": lambda i: run_dataforge(fmt, data, i), "datasets": lambda i: run_hf(fmt, data, i),
                 **{name: (lambda i, q=q: run_floor(q, fmt, i)) for name, q in queries.items()}}
        if args.baseline is not None:
            sides["dataforge_baseline"] = lambda i: run_dataforge(fmt, data, i, args.baseline.resolve())
        runs: dict[str, list[Run]] = {name: [] for name in sides}
        for name, side in sides.items():  # untimed: bytecode caches and the page cache, for every side
            side(-1)
        for i in range(args.repeats):  # interleaved, so machine noise hits every side alike
            for name, side in sides.items():
                runs[name].append(side(i))
            print(f"  run {i + 1}: " + ", ".join(f"{name} {r[-1][0]:.2f}s {r[-1][2]:.0f} MiB"
                                                 for name, r in runs.items()), flush=True)
        summary = {name: summarize(r) for name, r in runs.items()}
        summary["input_mib"] = round(data.stat().st_size / 2**20, 1)
        hf = summary["datasets"]
        summary["time_ratio_dataforge_over_datasets"] = round(summary["dataforge"]["seconds_median"] / hf["seconds_median"], 2)
        summary["peak_rss_ratio_dataforge_over_datasets"] = round(
            summary["dataforge"]["peak_rss_mib_max"] / hf["peak_rss_mib_max"], 2)
        for name in [*queries, *(["dataforge_baseline"] if args.baseline is not None else [])]:
            summary[f"time_ratio_{name}_over_datasets"] = round(summary[name]["seconds_median"] / hf["seconds_median"], 2)
        results[fmt] = summary

    print()
    print(f"| format ({args.rows:,} rows) | dataforge wall s | datasets wall s | time ratio | "
          "dataforge peak MiB | datasets peak MiB | memory ratio | on disk MiB (dataforge / datasets) |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt, r in results.items():
        print(f"| {fmt} | {r['dataforge']['seconds_median']:.2f} | {r['datasets']['seconds_median']:.2f} | "
              f"**{r['time_ratio_dataforge_over_datasets']:.2f}x** | {r['dataforge']['peak_rss_mib_max']:.0f} | "
              f"{r['datasets']['peak_rss_mib_max']:.0f} | **{r['peak_rss_ratio_dataforge_over_datasets']:.2f}x** | "
              f"{r['dataforge']['disk_mib']:.0f} / {r['datasets']['disk_mib']:.0f} |")
    print("\nratios are dataforge / datasets: below 1 means dataforge is faster / uses less memory")
    print("\nthe floor: DuckDB alone running the same store (no dataforge around it), time / datasets' time")
    print("| format | with the row ids | without them |")
    print("|---|---|---|")
    for fmt, r in results.items():
        print(f"| {fmt} | {r['duckdb_alone_ids']['seconds_median']:.2f} s = "
              f"**{r['time_ratio_duckdb_alone_ids_over_datasets']:.2f}x** | "
              f"{r['duckdb_alone_no_ids']['seconds_median']:.2f} s = {r['time_ratio_duckdb_alone_no_ids_over_datasets']:.2f}x |")

    if args.baseline is not None:
        print(f"\nthe baseline ({args.baseline}) in the same runs, time / datasets' time: " + ", ".join(
            f"{fmt} {r['dataforge_baseline']['seconds_median']:.2f} s = {r['time_ratio_dataforge_baseline_over_datasets']:.2f}x"
            f" ({r['dataforge_baseline']['peak_rss_mib_max']:.0f} MiB)" for fmt, r in results.items()))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "jsonl_to_catalog", "rows": args.rows, "repeats": args.repeats, "results": results,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "versions": versions(),
        "command": "python benchmarks/jsonl_to_catalog.py --rows %d --repeats %d --formats %s%s"
                   % (args.rows, args.repeats, ",".join(formats),
                      f" --baseline {args.baseline}" if args.baseline is not None else ""),
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
