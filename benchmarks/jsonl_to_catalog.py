"""Side-by-side: a 1,000,000-row JSONL read, columns selected/renamed, stored — dataforge vs 🤗 datasets.

    .venv/bin/python benchmarks/jsonl_to_catalog.py [--rows 1000000] [--repeats 3]

(a) `dataforge build` of a recipe with one `source.jsonl` step (`columns:` select + rename) into a fresh
    catalog: parse, content-hash row ids, store as a versioned catalog dataset.
(b) `datasets.load_dataset("json", data_files=...)` + `select_columns` + `rename_column` + `save_to_disk`,
    with a fresh HF cache dir each run so nothing is reused.

Each run is its own process (startup included); peak memory is that process's max RSS (`os.wait4`).
Writes benchmarks/results/jsonl_to_catalog.json. The generated input lives in benchmarks/_work/ (ignored).
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
name: bench-jsonl
steps:
  - id: rows
    type: source.jsonl
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
data, cache, out = sys.argv[1:4]
ds = datasets.load_dataset("json", data_files=data, split="train", cache_dir=cache)
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


def run_dataforge(data: Path, i: int) -> tuple[float, float, float]:
    d = WORK / f"df_{i}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    recipe = d / "recipe.yaml"
    recipe.write_text(RECIPE.format(data=data), encoding="utf-8")
    s, cpu, mib, out = timed([sys.executable, "-c", DATAFORGE, str(recipe), str(d / "catalog.duckdb")])
    assert "dataset bench_rows v1" in out, out
    shutil.rmtree(d, ignore_errors=True)
    return s, cpu, mib


def run_hf(data: Path, i: int) -> tuple[float, float, float]:
    d = WORK / f"hf_{i}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    s, cpu, mib, _ = timed([sys.executable, "-c", HF, str(data), str(d / "cache"), str(d / "out")])
    shutil.rmtree(d, ignore_errors=True)
    return s, cpu, mib


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("dataforge", "datasets", "duckdb", "polars", "pyarrow")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    data = make_input(args.rows)
    print(f"input: {data} ({data.stat().st_size / 2**20:.0f} MiB, {args.rows:,} rows)")
    runs: dict[str, list[tuple[float, float, float]]] = {"dataforge": [], "datasets": []}
    for i in range(args.repeats):  # interleaved, so machine noise hits both alike
        runs["dataforge"].append(run_dataforge(data, i))
        runs["datasets"].append(run_hf(data, i))
        print(f"  run {i + 1}: dataforge {runs['dataforge'][-1][0]:.2f}s, datasets {runs['datasets'][-1][0]:.2f}s")

    summary = {name: {"seconds_median": round(statistics.median(s for s, _, _ in r), 2),
                      "seconds_all": [round(s, 2) for s, _, _ in r],
                      "cpu_seconds_median": round(statistics.median(c for _, c, _ in r), 2),
                      "peak_rss_mib_max": round(max(m for _, _, m in r), 1)} for name, r in runs.items()}
    ratio = summary["datasets"]["seconds_median"] / summary["dataforge"]["seconds_median"]
    mem_ratio = summary["datasets"]["peak_rss_mib_max"] / summary["dataforge"]["peak_rss_mib_max"]
    print()
    print(f"| {'job (' + format(args.rows, ',') + ' rows)':<56} | wall s (median) | CPU s (median) | peak RSS MiB |")
    print(f"|{'-' * 58}|-----------------|----------------|--------------|")
    for name, label in (("dataforge", "dataforge build (source.jsonl + columns -> catalog)"),
                        ("datasets", "datasets load_dataset(json)+select/rename+save_to_disk")):
        r = summary[name]
        print(f"| {label:<56} | {r['seconds_median']:>15.2f} | {r['cpu_seconds_median']:>14.2f} | "
              f"{r['peak_rss_mib_max']:>12.0f} |")
    print(f"\ntime ratio datasets/dataforge = {ratio:.2f}x; peak-memory ratio = {mem_ratio:.2f}x")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "jsonl_to_catalog", "rows": args.rows, "repeats": args.repeats,
        "input_mib": round(data.stat().st_size / 2**20, 1), "results": summary,
        "time_ratio_datasets_over_dataforge": round(ratio, 2),
        "peak_rss_ratio_datasets_over_dataforge": round(mem_ratio, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "versions": versions(),
        "command": "python benchmarks/jsonl_to_catalog.py --rows %d --repeats %d" % (args.rows, args.repeats),
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
