"""Side-by-side: the symbol-tuning transform alone, dataforge vs. a `datasets.map` function.

    .venv/bin/python benchmarks/symbols_vs_map.py --rows 200000

Input: SST-2 training sentences from ../shared/data (repeated, each made unique by a suffix).
Both sides build one prompt per row with k = 2-10 exemplars per class (never the row itself),
labels remapped to distinct symbols of the training pool (never a natural label), a drawn
format and separator. The reference is the usual per-row `datasets.map` with a per-row seeded
`random.Random`; dataforge is `class_prompts`. Both run in this process, one after the other.
The full symbols + template + export comparison is benchmarks/transform_export.py.
"""
import argparse
from pathlib import Path
import time, random, json, polars as pl
import datasets
from dataforge.textutil.fewshot import class_prompts, PromptOptions, DEFAULT_FORMATS, DEFAULT_SEPARATORS
from dataforge.textutil.symbols import symbol_pool
from dataforge.rows import content_ids
datasets.disable_progress_bars()
ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=200_000)
n = ap.parse_args().rows
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "classification" / "sst2" / "stsa.binary.train"
if not SST2.exists():
    raise SystemExit(f"needs {SST2} (../shared/data is not beside this checkout)")
lines = open(SST2).read().splitlines()
base = pl.DataFrame({"label": [l.split(" ", 1)[0] for l in lines], "text": [l.split(" ", 1)[1] for l in lines]})
df = pl.concat([base] * (n // base.height + 1)).head(n).with_row_index("i")
df = df.with_columns(pl.concat_str([pl.col("text"), pl.lit(" #"), pl.col("i").cast(pl.Utf8)]).alias("text")).drop("i")
df = df.with_columns(content_ids(df).alias("id"))
pool = symbol_pool("train")
symbols = pool.symbols.to_list(); offs = pool.offsets
by_class = {c: [i for i, l in enumerate(df["label"].to_list()) if l == c] for c in ["0", "1"]}
texts = df["text"].to_list(); ids = df["id"].to_list()
names = {"0": "negative", "1": "positive"}
fmts = [(f.split("{input}")[0], *f.split("{input}")[1].split("{label}")) for f in DEFAULT_FORMATS]

def one(row, idx, seed=1):
    rnd = random.Random(f"{seed}:{row['id']}")
    k = rnd.randint(2, 10)
    syms = {}
    used = set()
    for c in ["0", "1"]:
        while True:
            kind = rnd.randrange(3)
            s = symbols[offs[kind] + rnd.randrange(offs[kind + 1] - offs[kind])]
            if s.lower() not in used and s.lower() not in ("negative", "positive", "0", "1"):
                break
        used.add(s.lower()); syms[c] = s
    ex = []
    for c in ["0", "1"]:
        cand = by_class[c]
        picked = set()
        while len(picked) < k:
            j = cand[rnd.randrange(len(cand))]
            if j != idx:
                picked.add(j)
        ex += [(j, c) for j in picked]
    rnd.shuffle(ex)
    pre, mid, post = fmts[rnd.randrange(len(fmts))]
    sep = DEFAULT_SEPARATORS[rnd.randrange(len(DEFAULT_SEPARATORS))]
    parts = [f"{pre}{texts[j]}{mid}{syms[c]}{post}" for j, c in ex]
    prompt = sep.join(parts) + sep + f"{pre}{row['text']}{mid.rstrip(' ')}"
    return {"prompt": prompt, "target": syms[row["label"]], "symbol_map": json.dumps({names[c]: s for c, s in syms.items()}),
            "exemplar_ids": [ids[j] for j, _ in ex]}

ds = datasets.Dataset.from_polars(df) if hasattr(datasets.Dataset, "from_polars") else datasets.Dataset(df.to_arrow())
t = time.perf_counter()
out_ref = ds.map(one, with_indices=True)
t_ref = time.perf_counter() - t
t = time.perf_counter()
out = class_prompts(df, task="sst2", label_names=names, opts=PromptOptions(k=(2, 10), pool=pool), seed=1)
t_ours = time.perf_counter() - t
print(f"{n} rows: datasets.map {t_ref:.1f}s ({n/t_ref:,.0f} rows/s); dataforge {t_ours:.1f}s ({n/t_ours:,.0f} rows/s); ratio {t_ref/t_ours:.1f}x")
