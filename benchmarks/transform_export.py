"""Side-by-side: symbol remap + template + JSONL export of 1,000,000 classification rows.

    .venv/bin/python benchmarks/transform_export.py                 # 1,000,000 rows
    .venv/bin/python benchmarks/transform_export.py --rows 100000   # quicker

The rows are synthetic (made here, seeded): 10 tasks, each with its own label set (2-5 classes),
and a sentence of 6-18 words from a word list. The transform is symbol tuning's: every row
becomes one in-context prompt with K exemplars per class from the same task (never the row
itself), labels remapped per prompt to arbitrary symbols from the training pool, a drawn
input-label format and separator; then the export template makes `prompt` / `completion`
and the rows are written as JSON lines.

- dataforge: the `transform.symbols` step's own `run` on a polars frame, then
  `dataforge.export.export_frames` with an export-time template (what `dataforge export`
  runs after reading the catalog), writing train.jsonl + manifest.json.
- reference: the same transform as a `datasets.map` function (one row per call, the usual
  way, with a per-row seeded `random.Random`), then `Dataset.to_json(lines=True)`; also
  timed with `batched=True` (same code looping over a batch).

The two sides draw different random numbers, so the check is structural: same row count,
every prompt ends with its query and every completion's symbol occurs in its prompt.
Each side runs in its own process; wall time covers reading the input Parquet file through
writing the output (not interpreter start or imports), CPU time is the process's over the same
span (polars uses several threads, the reference one); peak memory is the child's maximum
resident set (`os.wait4` rusage). `--format parquet` writes Parquet on both sides (`Dataset.to_parquet`). Results go to
benchmarks/results/transform_export.json, one entry per format.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "_work" / "transform_export"
OUT = ROOT / "results" / "transform_export.json"
SEED = 13

WORDS = """the a of to and in is it you that he was for on are with as his they be at one have this from
or had by word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing see
him two has look more day could go come did number sound no most people my over know water than call
first who may down side been now find any new work part take get place made live where after back little
only round man year came show every good me give our under name very through just form sentence great
think say help low line differ turn cause much mean before move right boy old too same tell does set three
want air well also play small end put home read hand port large spell add even land here must big high
such follow act why ask men change went light kind off need house picture try us again animal point mother
world near build self earth father head stand own page should country found answer school grow study still
learn plant cover food sun four between state keep eye never last let thought city tree cross farm hard
start might story saw far sea draw left late run while press close night real life few north open seem
together next white children begin got walk example ease paper group always music those both mark often
letter until mile river car feet care second book carry took science eat room friend began idea fish
mountain stop once base hear horse cut sure watch color face wood main enough plain girl usual young
ready above ever red list though feel talk bird soon body dog family direct pose leave song measure door""".split()

TASKS = {
    "sentiment": ["positive", "negative"],
    "topic": ["sports", "politics", "science", "business"],
    "subjectivity": ["subjective", "objective"],
    "spam": ["spam", "ham"],
    "question_type": ["description", "entity", "human", "location", "number"],
    "toxicity": ["toxic", "neutral"],
    "emotion": ["joy", "anger", "sadness", "fear"],
    "formality": ["formal", "informal"],
    "stance": ["favor", "against", "none"],
    "intent": ["book", "cancel", "ask", "complain"],
}
PROMPT = "{{ prompt }}"
COMPLETION = " {{ target }}"


def make_input(rows: int, path: Path) -> None:
    """Write `rows` synthetic classification rows (task, text, label) to a Parquet file."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(SEED)
    names = list(TASKS)
    task_idx = rng.integers(0, len(names), rows)
    label_pos = rng.integers(0, 1 << 30, rows)
    width = 18
    words = pl.Series(WORDS).gather(rng.integers(0, len(WORDS), rows * width)).reshape((rows, width))
    lengths = pl.Series(rng.integers(6, width + 1, rows))
    df = pl.DataFrame({"task": pl.Series(names).gather(task_idx), "_w": words.arr.to_list(), "_n": lengths,
                       "_p": pl.Series(label_pos)})
    label_sets = pl.Series([TASKS[n] for n in names])
    df = df.with_columns(
        pl.col("_w").list.head(pl.col("_n")).list.join(" ").str.to_titlecase().alias("text"),
        label_sets.gather(task_idx).alias("_labels"),
    ).with_columns(
        pl.col("_labels").list.get(pl.col("_p") % pl.col("_labels").list.len()).alias("label"),
    ).select("task", "text", "label")
    from dataforge.rows import assign_ids

    df, _ = assign_ids(df)  # content ids, as rows have in the catalog
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path)


K = 1  # exemplars per class
FORMATS = ["Input: {input}\nLabel: {label}", "Text: {input}\nAnswer: {label}", "Q: {input}\nA: {label}"]
SEPARATORS = ["\n\n", "\n###\n"]


# -- the two sides (each runs in a child process) ----------------------------------------------

def run_dataforge(inp: Path, out: Path, fmt: str) -> dict:
    import polars as pl

    from dataforge.export.mixture import load_mixture
    from dataforge.export.run import export_frames
    from dataforge.steps.base import RunContext
    from dataforge.steps.transform.symbols import SymbolsTransform

    out.parent.mkdir(parents=True, exist_ok=True)
    mix = out.parent / "bench_mixture.yaml"
    mix.write_text(json.dumps({"name": "bench", "seed": SEED,
                               "template": {"templates": [{"id": "symbol", "prompt": PROMPT, "target": COMPLETION}]},
                               "sources": [{"dataset": "synthetic"}]}), encoding="utf-8")
    step = SymbolsTransform(id="symbols", type="transform.symbols", task_column="task", k=K, pool="train",
                            formats=FORMATS, separators=SEPARATORS)
    ctx = RunContext(recipe_path=mix, seed=SEED, step_id="symbols")
    t0, c0 = time.perf_counter(), time.process_time()
    df = pl.read_parquet(inp)
    # One prompt per query row: its id is the query's (the executor would re-hash it in a build).
    prompts = step.run([df], ctx).rename({"_parent_id": "id"})
    res = export_frames(load_mixture(mix), [prompts], out, fmt)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "rows": res.manifest.rows["train"], "file": str(out / f"train.{fmt}")}


def run_reference(inp: Path, out: Path, batched: bool, fmt: str) -> dict:
    import random

    import datasets
    import pyarrow.parquet as pq

    from dataforge.textutil.symbols import symbol_pool

    datasets.disable_progress_bars()
    pool = symbol_pool("train").symbols.to_list()
    fmts = [(f.split("{input}")[0], *f.split("{input}")[1].split("{label}")) for f in FORMATS]
    t0, c0 = time.perf_counter(), time.process_time()
    ds = datasets.Dataset(pq.read_table(inp))
    # Members of each (task, class), as the step groups them.
    members: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for i, t, x, y in zip(ds["id"], ds["task"], ds["text"], ds["label"]):
        members.setdefault(t, {}).setdefault(y, []).append((i, x))
    classes = {t: sorted(m) for t, m in members.items()}

    def one(row_id: str, task: str, text: str, label: str) -> tuple[str, str]:
        rng = random.Random(f"{SEED}:{row_id}")
        cls = classes[task]
        while True:
            symbols = rng.sample(pool, len(cls))
            if not {s.lower() for s in symbols} & {c.lower() for c in cls}:
                break
        sym = dict(zip(cls, symbols))
        exemplars = []
        for c in cls:
            rows = members[task][c]
            picks = [j for j in rng.sample(range(len(rows)), min(K + 1, len(rows))) if rows[j][0] != row_id][:K]
            exemplars += [(rows[j][1], sym[c]) for j in picks]
        rng.shuffle(exemplars)
        pre, mid, post = rng.choice(fmts)
        sep = rng.choice(SEPARATORS)
        body = "".join(f"{pre}{x}{mid}{s}{post}{sep}" for x, s in exemplars)
        return f"{body}{pre}{text}{mid.rstrip(' ')}", f" {sym[label]}"

    if batched:
        def fn(batch):
            pairs = [one(*r) for r in zip(batch["id"], batch["task"], batch["text"], batch["label"])]
            return {"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]}
    else:
        def fn(row):
            p, c = one(row["id"], row["task"], row["text"], row["label"])
            return {"prompt": p, "completion": c}

    ds = ds.map(fn, batched=batched, remove_columns=ds.column_names)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        ds.to_json(str(out / "train.jsonl"), lines=True, force_ascii=False)
    else:
        ds.to_parquet(str(out / "train.parquet"))
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "rows": ds.num_rows, "file": str(out / f"train.{fmt}")}


# -- harness ---------------------------------------------------------------------------------

def _child(side: str, inp: Path, fmt: str) -> dict:
    out = WORK / side
    cmd = [sys.executable, __file__, "--child", side, "--input", str(inp), "--out", str(out), "--format", fmt]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{side} failed (status {status})")
    res = json.loads(stdout.strip().splitlines()[-1])
    res["file"] = Path(res["file"]).resolve().relative_to(ROOT.parent).as_posix()
    res.update(process_seconds=round(wall, 2), peak_rss_mib=round(usage.ru_maxrss / 1024, 1),
               seconds=round(res["seconds"], 2), cpu_seconds=round(res["cpu_seconds"], 2))
    return res


def _check(path: Path, rows: int) -> bool:
    """Row count, and on a sample: the symbol of each completion occurs in its prompt."""
    import polars as pl

    df = (pl.read_ndjson(path) if path.suffix == ".jsonl" else pl.read_parquet(path)).select("prompt", "completion")
    sample = df.sample(min(2000, df.height), seed=0)
    ok = sample.select(pl.col("prompt").str.contains(pl.col("completion").str.strip_chars(), literal=True).all()).item()
    return df.height == rows and bool(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    ap.add_argument("--sides", default="dataforge,datasets_map,datasets_map_batched",
                    help="comma-separated: dataforge, datasets_map, datasets_map_batched")
    ap.add_argument("--child", choices=["dataforge", "datasets_map", "datasets_map_batched"])
    ap.add_argument("--input", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        import shutil

        shutil.rmtree(args.out, ignore_errors=True)
        if args.child == "dataforge":
            res = run_dataforge(args.input, args.out, args.format)
        else:
            res = run_reference(args.input, args.out, batched=args.child.endswith("batched"), fmt=args.format)
        print(json.dumps(res))
        return

    inp = WORK / f"input_{args.rows}.parquet"
    if not inp.exists():
        make_input(args.rows, inp)
    results = {side: _child(side, inp, args.format) for side in args.sides.split(",")}
    checks = {side: _check(ROOT.parent / r["file"], args.rows) for side, r in results.items()}
    df_r = results["dataforge"]
    report = {
        "benchmark": f"transform.symbols (k={K} per class) + export template + {args.format} export",
        "rows": args.rows,
        "command": f".venv/bin/python benchmarks/transform_export.py --rows {args.rows} --format {args.format}"
                   + (f" --sides {args.sides}" if args.sides != ap.get_default("sides") else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": results,
        **{f"speedup_vs_{side}": round(r["seconds"] / df_r["seconds"], 1) for side, r in results.items()
           if side != "dataforge"},
        **{f"cpu_ratio_vs_{side}": round(r["cpu_seconds"] / df_r["cpu_seconds"], 1) for side, r in results.items()
           if side != "dataforge"},
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "checks_passed": checks,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(OUT.read_text(encoding="utf-8")) if OUT.exists() else {}
    if "results" in previous:  # an older single-format file
        previous = {}
    OUT.write_text(json.dumps({**previous, args.format: report}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    if not all(checks.values()):
        raise SystemExit("structural check failed: " + json.dumps(checks))


if __name__ == "__main__":
    main()
