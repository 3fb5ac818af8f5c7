"""Side by side on this machine: the Ray executor vs the local executor, three workloads in one run.

    flock /work/heavy.lock .venv/bin/python benchmarks/scale_out.py            # the issue's sizes
    flock /work/heavy.lock .venv/bin/python benchmarks/scale_out.py --quick    # 100k rows, 16 prompts, 400 calls

1. Rows: `transform.symbols` (symbol remap; cross-row, so it runs on the driver) then a zero-shot
   `transform.template` (row-wise, so its slices run on Ray workers) over N rows, the whole build timed
   (catalog commits included) on both executors. Goal: Ray at most 1.3x the local time.
2. The bundled local model (SmolLM2-135M GGUF) answering P prompts: one process (llama.cpp's default
   threads) vs 2 Ray workers each loading the model once. Goal: at least 1.6x the output tokens/s.
3. R chat requests to a loopback server answering after 200 ms, `max_concurrency: 64`: through Ray
   workers (the concurrency split between them) vs locally. Goal: within 1.25x of ideal (R/64 x 0.2 s).

Also reports the catalog's commit throughput (rows/s of `save_step_output` for the template rows),
the number quoted in docs/scale-out.md. Ray runs with num_cpus=2 (this machine's cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def rows_recipe(d: Path, n: int) -> Path:
    import polars as pl

    data = d / "rows.parquet"
    pl.DataFrame({"text": [f"review {i} of the film, scene {i % 977}" for i in range(n)],
                  "label": [i % 2 for i in range(n)]}).write_parquet(data)
    recipe = d / "rows.yaml"
    recipe.write_text(f"""
name: bench-rows
seed: 5
steps:
  - id: src
    type: source.parquet
    path: {data}
  - id: sym
    type: transform.symbols
    k: 1
    passthrough: [text]
    label_names: {{src: {{0: negative, 1: positive}}}}
  - id: tpl
    type: transform.template
    answer_column: label
    templates:
      "*":
        - {{id: a, prompt: "Review: {{{{ text }}}}", target: "{{{{ answer }}}}"}}
        - {{id: b, prompt: "{{{{ text }}}} What is the sentiment?", target: "{{{{ answer }}}}"}}
outputs:
  bench_rows: tpl
""")
    return recipe


def llm_recipe(d: Path, name: str, llm: str, prompts: int) -> Path:
    rows = "\n".join(f"      - {{q: 'Name a colour and a fruit, example {i}.'}}" for i in range(prompts))
    recipe = d / f"{name}.yaml"
    recipe.write_text(f"""
name: {name}
llm:
{llm}
steps:
  - id: src
    type: source.inline
    rows:
{rows}
  - id: gen
    type: generate.prompt
    prompt: "{{{{ q }}}}"
outputs:
  {name.replace('-', '_')}: gen
""")
    return recipe


def timed_build(recipe: Path, catalog: Path, executor: str) -> tuple[float, object]:
    from dataforge import api

    t0 = time.perf_counter()
    res = api.build(recipe, catalog=catalog, executor=executor, force=True)
    return time.perf_counter() - t0, res


def tokens(catalog: Path, build_id: str) -> int:
    from dataforge.catalog.query import run_select

    df = run_select(catalog, f"select sum(output_tokens) t from llm_calls where build_id = '{build_id}' "
                             "and status = 'ok'")
    return int(df["t"][0] or 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--prompts", type=int)
    ap.add_argument("--requests", type=int)
    args = ap.parse_args()
    n_rows = args.rows or (100_000 if args.quick else 1_000_000)
    n_prompts = args.prompts or (16 if args.quick else 64)
    n_req = args.requests or (400 if args.quick else 2000)

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    report: dict = {"ray_start_s": round(time.perf_counter() - t0, 2), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # 1. rows
        recipe = rows_recipe(d, n_rows)
        loc, res_l = timed_build(recipe, d / "l1.duckdb", "local")
        ray_s, res_r = timed_build(recipe, d / "r1.duckdb", "ray")
        tpl = next(s for s in res_l.steps if s.step_id == "tpl")
        report["rows"] = {"rows": n_rows, "local_s": round(loc, 2), "ray_s": round(ray_s, 2),
                          "ratio": round(ray_s / loc, 3), "goal": "<= 1.3"}
        # Catalog commit throughput: time of one save of the template step's rows.
        from dataforge import api
        from dataforge.catalog.store import Catalog

        df = api.read("bench_rows", catalog=d / "l1.duckdb")
        cat = Catalog(d / "commit.duckdb")
        bid = cat.begin_build("commit", str(recipe), "x")
        t0 = time.perf_counter()
        cat.save_step_output(build_id=bid, step_id="tpl", type="transform.template", fingerprint="f" * 64, df=df,
                             rows_in=df.height, seconds=0.0, inputs=["sym"], rejections=None, lineage=None, notes={})
        commit_s = time.perf_counter() - t0
        report["catalog_commit"] = {"rows": df.height, "seconds": round(commit_s, 2),
                                    "rows_per_s": round(df.height / commit_s), "template_step_s": round(tpl.seconds, 2)}
        print(json.dumps(report), flush=True)

        # 2. the bundled model
        recipe = llm_recipe(d, "bench-local", "  provider: local\n  temperature: 0\n  max_tokens: 24", n_prompts)
        loc, res_l = timed_build(recipe, d / "l2.duckdb", "local")
        ray_s, res_r = timed_build(recipe, d / "r2.duckdb", "ray")
        tl, tr = tokens(d / "l2.duckdb", res_l.build_id), tokens(d / "r2.duckdb", res_r.build_id)
        report["local_model"] = {"prompts": n_prompts, "local_s": round(loc, 2), "ray_s": round(ray_s, 2),
                                 "local_tok_s": round(tl / loc, 1), "ray_tok_s": round(tr / ray_s, 1),
                                 "speedup": round((tr / ray_s) / (tl / loc), 3), "goal": ">= 1.6",
                                 "same_answers": api.read("bench_local", catalog=d / "l2.duckdb").equals(
                                     api.read("bench_local", catalog=d / "r2.duckdb"))}
        print(json.dumps(report), flush=True)

        # 3. many calls at 200 ms
        from llm_throughput import LATENCY_S, start_server

        proc, url = start_server()
        try:
            os.environ["DATAFORGE_BENCH_KEY"] = "sk-bench"
            llm = (f"  provider: openai\n  model: bench\n  base_url: {url}\n  api_key_env: DATAFORGE_BENCH_KEY\n"
                   "  max_concurrency: 64\n  max_tokens: 4")
            recipe = llm_recipe(d, "bench-calls", llm, n_req)
            ideal = n_req / 64 * LATENCY_S
            loc, _ = timed_build(recipe, d / "l3.duckdb", "local")
            ray_s, _ = timed_build(recipe, d / "r3.duckdb", "ray")
        finally:
            proc.kill()
        report["calls"] = {"requests": n_req, "ideal_s": round(ideal, 2), "local_s": round(loc, 2),
                           "ray_s": round(ray_s, 2), "local_vs_ideal": round(loc / ideal, 3),
                           "ray_vs_ideal": round(ray_s / ideal, 3), "goal": "<= 1.25"}
    ray.shutdown()
    print(json.dumps(report, indent=1))
    out = ROOT / "benchmarks" / "results" / "scale_out.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
