"""Side-by-side: a 1,000,000-row JSONL, CSV and Parquet file read, columns selected/renamed, stored — dataforge vs 🤗 datasets.

    .venv/bin/python benchmarks/jsonl_to_catalog.py [--rows 1000000] [--repeats 3] [--formats jsonl,csv,parquet]

For each format:
(a) `dataforge build` of a recipe with one source step (`source.jsonl` / `source.csv` / `source.parquet`,
    `columns:` select + rename) into a fresh catalog: parse, validate, content-hash row ids, store as a
    versioned catalog dataset.
(b) `datasets.load_dataset("json" / "csv" / "parquet", data_files=...)` + `select_columns` + `rename_column`
    + `save_to_disk`, with a fresh HF cache dir each run so nothing is reused.

Each run is its own fresh process (startup included), the two sides interleaved so machine noise hits
both alike; peak memory is that process's max RSS (`os.wait4`). Reported as ratios dataforge / datasets
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


def timed(args: list[str]) -> tuple[float, float, float, str]:
    """Run a process; return (wall seconds, CPU seconds, peak RSS in MiB, stdout+stderr)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def run_dataforge(fmt: str, data: Path, i: int) -> tuple[float, float, float]:
    d = WORK / f"df_{fmt}_{i}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    recipe = d / "recipe.yaml"
    recipe.write_text(RECIPE.format(fmt=fmt, data=data), encoding="utf-8")
    s, cpu, mib, out = timed([sys.executable, "-c", DATAFORGE, str(recipe), str(d / "catalog.duckdb")])
    assert "dataset bench_rows v1" in out, out
    shutil.rmtree(d, ignore_errors=True)
    return s, cpu, mib


def run_hf(fmt: str, data: Path, i: int) -> tuple[float, float, float]:
    d = WORK / f"hf_{fmt}_{i}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    s, cpu, mib, _ = timed([sys.executable, "-c", HF, BUILDERS[fmt], str(data), str(d / "cache"), str(d / "out")])
    shutil.rmtree(d, ignore_errors=True)
    return s, cpu, mib


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("dataforge", "datasets", "duckdb", "polars", "pyarrow")}


def summarize(runs: list[tuple[float, float, float]]) -> dict:
    return {"seconds_median": round(statistics.median(s for s, _, _ in runs), 2),
            "seconds_all": [round(s, 2) for s, _, _ in runs],
            "cpu_seconds_median": round(statistics.median(c for _, c, _ in runs), 2),
            "peak_rss_mib_max": round(max(m for _, _, m in runs), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--formats", default="jsonl,csv,parquet", help="comma-separated: jsonl, csv, parquet")
    args = ap.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown format(s) {unknown}; choose from {', '.join(BUILDERS)}")

    jsonl = make_input(args.rows)
    results: dict[str, dict] = {}
    for fmt in formats:
        data = make_format(jsonl, fmt)
        print(f"{fmt}: {data} ({data.stat().st_size / 2**20:.0f} MiB, {args.rows:,} rows)", flush=True)
        runs: dict[str, list[tuple[float, float, float]]] = {"dataforge": [], "datasets": []}
        for i in range(args.repeats):  # interleaved, so machine noise hits both alike
            runs["dataforge"].append(run_dataforge(fmt, data, i))
            runs["datasets"].append(run_hf(fmt, data, i))
            print(f"  run {i + 1}: dataforge {runs['dataforge'][-1][0]:.2f}s {runs['dataforge'][-1][2]:.0f} MiB, "
                  f"datasets {runs['datasets'][-1][0]:.2f}s {runs['datasets'][-1][2]:.0f} MiB", flush=True)
        summary = {name: summarize(r) for name, r in runs.items()}
        summary["input_mib"] = round(data.stat().st_size / 2**20, 1)
        summary["time_ratio_dataforge_over_datasets"] = round(
            summary["dataforge"]["seconds_median"] / summary["datasets"]["seconds_median"], 2)
        summary["peak_rss_ratio_dataforge_over_datasets"] = round(
            summary["dataforge"]["peak_rss_mib_max"] / summary["datasets"]["peak_rss_mib_max"], 2)
        results[fmt] = summary

    print()
    print(f"| format ({args.rows:,} rows) | dataforge wall s | datasets wall s | time ratio | "
          "dataforge peak MiB | datasets peak MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for fmt, r in results.items():
        print(f"| {fmt} | {r['dataforge']['seconds_median']:.2f} | {r['datasets']['seconds_median']:.2f} | "
              f"**{r['time_ratio_dataforge_over_datasets']:.2f}x** | {r['dataforge']['peak_rss_mib_max']:.0f} | "
              f"{r['datasets']['peak_rss_mib_max']:.0f} | **{r['peak_rss_ratio_dataforge_over_datasets']:.2f}x** |")
    print("\nratios are dataforge / datasets: below 1 means dataforge is faster / uses less memory")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "jsonl_to_catalog", "rows": args.rows, "repeats": args.repeats, "results": results,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "versions": versions(),
        "command": "python benchmarks/jsonl_to_catalog.py --rows %d --repeats %d --formats %s"
                   % (args.rows, args.repeats, ",".join(formats)),
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
