"""Side-by-side: dataforge's `filter.rouge_l` greedy pool vs the rouge_score Self-Instruct loop.

    .venv/bin/python benchmarks/rouge_filter.py            # full run (< 10 min on 2 cores)
    .venv/bin/python benchmarks/rouge_filter.py --quick    # smaller samples

Corpora (read from ../shared/data, never copied): the 2,175 Alpaca + seed instructions, and a
50,000-row corpus of texts from ../shared/data (Alpaca instructions/inputs/outputs, seed tasks,
SST-2, MR, subj, TREC, SMS spam, GSM8K questions), shuffled with a fixed seed.

The reference is the Self-Instruct loop written with rouge_score: each new instruction is scored
against the seeds plus every instruction kept so far, and dropped when the best F is above the
threshold. Two variants are timed: the original `scorer.score` per pair (re-tokenizes both
texts), and Stanford Alpaca's variant that tokenizes once and calls `rouge_scorer._score_lcs`.
Both run single-process; a process pool (as in the originals) cannot beat 2x on 2 cores, and its
per-instruction startup makes it slower on short pools. Where the reference would take hours it
runs on the first rows of the corpus only: its pairs/s is measured there and its full time is
extrapolated from the number of pairs the full run compares. Decisions are compared on every row
the reference ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
from rouge_score import rouge_scorer

from dataforge.textsim import greedy_filter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "rouge_filter.json"


def _lines(path: Path, encoding: str = "utf-8") -> list[str]:
    return [ln for ln in path.read_text(encoding=encoding, errors="replace").splitlines() if ln.strip()]


def _after_label(lines: list[str], sep: str | None = None) -> list[str]:
    return [ln.split(sep, 1)[1].strip() for ln in lines if len(ln.split(sep, 1)) == 2]


def seeds_and_alpaca() -> tuple[list[str], list[str], list[dict]]:
    """(seed instructions, Alpaca instructions, Alpaca records)."""
    seeds = [json.loads(ln) for ln in _lines(DATA / "self_instruct" / "seed_tasks.jsonl")]
    alpaca = json.loads((DATA / "alpaca" / "alpaca_first2000.json").read_text(encoding="utf-8"))
    return [s["instruction"] for s in seeds], [r["instruction"] for r in alpaca], alpaca


def corpus_50k(n: int = 50_000, seed: int = 0) -> list[str]:
    """`n` texts from ../shared/data, shuffled with `seed`."""
    seeds = [json.loads(ln) for ln in _lines(DATA / "self_instruct" / "seed_tasks.jsonl")]
    _, _, alpaca = seeds_and_alpaca()
    cls = DATA / "classification"
    texts: list[str] = []
    texts += [s["instruction"] for s in seeds]
    texts += [x for s in seeds for inst in s["instances"] for x in (inst["input"], inst["output"]) if x.strip()]
    texts += [x for r in alpaca for x in (r["instruction"], r["input"], r["output"]) if x.strip()]
    for f in ("stsa.binary.train", "stsa.binary.dev"):
        texts += _after_label(_lines(cls / "sst2" / f))
    texts += _after_label(_lines(cls / "mr" / "rt-polarity.all", "latin-1"))
    texts += _after_label(_lines(cls / "subj" / "subj.all"))
    for f in ("train.txt", "test.txt"):
        texts += _after_label(_lines(cls / "trec" / f))
    texts += _after_label(_lines(cls / "sms_spam" / "SMSSpamCollection"), "\t")
    for f in ("train.jsonl", "test.jsonl"):
        texts += [json.loads(ln)["question"] for ln in _lines(DATA / "gsm8k" / f)]
    random.Random(seed).shuffle(texts)
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} texts under {DATA}")
    return texts[:n]


def trec_questions() -> list[str]:
    """TREC questions (instruction-like), in file order."""
    return _after_label(_lines(DATA / "classification" / "trec" / "train.txt"))


# -- the reference: Self-Instruct's loop written with rouge_score ---------------------------------
def reference_loop(texts: list[str], seeds: list[str], threshold: float, variant: str,
                   budget_s: float | None = None) -> dict:
    """Self-Instruct's filter with rouge_score; stops after `budget_s` seconds (rows done so far).

    variant "score": `scorer.score(new, old)` per pair, as in Self-Instruct's bootstrap script;
    variant "score_lcs": texts tokenized once, `rouge_scorer._score_lcs` per pair, as in Alpaca's.
    Returns keep/max/nearest for the rows done, the pairs compared and the seconds taken.
    """
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tokenize = scorer._tokenizer.tokenize
    pool_text = list(seeds)
    pool_tok = [tokenize(t) for t in seeds] if variant == "score_lcs" else None
    serial = list(range(len(seeds)))
    keep, best, nearest = [], [], []
    pairs = 0
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        if variant == "score":
            scores = [scorer.score(text, old)["rougeL"].fmeasure for old in pool_text]
        else:
            toks = tokenize(text)
            scores = [rouge_scorer._score_lcs(toks, old).fmeasure for old in pool_tok]
        pairs += len(scores)
        top = max(scores) if scores else 0.0
        best.append(top)
        nearest.append(serial[int(np.argmax(scores))] if top > 0 else -1)
        keep.append(not top > threshold)
        if keep[-1]:
            pool_text.append(text)
            if pool_tok is not None:
                pool_tok.append(toks)
            serial.append(len(seeds) + i)
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            break
    return {"keep": np.array(keep), "max": np.array(best), "nearest": np.array(nearest), "pairs": pairs,
            "seconds": time.perf_counter() - t0, "rows": len(keep)}


def pairs_compared(keep: np.ndarray, n_seeds: int) -> int:
    """Pairs the Self-Instruct loop compares: for each row, seeds + rows kept before it."""
    kept_before = np.concatenate([[0], np.cumsum(keep)[:-1]])
    return int(np.sum(n_seeds + kept_before))


def ours(texts: list[str], seeds: list[str], threshold: float, workers: int) -> dict:
    t0 = time.perf_counter()
    r = greedy_filter(texts, threshold, seeds, workers=workers)
    seconds = time.perf_counter() - t0
    return {"keep": r.keep, "max": r.max_score, "nearest": r.nearest, "seconds": seconds,
            "pairs": pairs_compared(r.keep, len(seeds))}


def compare(name: str, texts: list[str], seeds: list[str], threshold: float, ref_budget_s: float,
            variants: tuple[str, ...] = ("score", "score_lcs")) -> dict:
    """Run ours (all cores and one thread) and the reference variants; print and return the numbers."""
    out: dict = {"corpus": name, "rows": len(texts), "seeds": len(seeds), "threshold": threshold}
    mine = ours(texts, seeds, threshold, workers=-1)
    mine1 = ours(texts, seeds, threshold, workers=1)
    assert (mine["keep"] == mine1["keep"]).all() and (mine["max"] == mine1["max"]).all()
    out["kept"] = int(mine["keep"].sum())
    out["pairs"] = mine["pairs"]
    out["dataforge"] = {"seconds": mine["seconds"], "pairs_per_s": mine["pairs"] / mine["seconds"],
                        "seconds_1_thread": mine1["seconds"], "pairs_per_s_1_thread": mine1["pairs"] / mine1["seconds"]}
    print(f"\n{name}: {len(texts):,} rows + {len(seeds)} seeds, threshold {threshold}: "
          f"kept {out['kept']:,}, {mine['pairs']:,} pairs")
    print(f"  dataforge (all cores) {mine['seconds']:9.2f} s  {out['dataforge']['pairs_per_s']:14,.0f} pairs/s")
    print(f"  dataforge (1 thread)  {mine1['seconds']:9.2f} s  {out['dataforge']['pairs_per_s_1_thread']:14,.0f} pairs/s")
    for variant in variants:
        ref = reference_loop(texts, seeds, threshold, variant, budget_s=ref_budget_s)
        n = ref["rows"]
        same = bool((ref["keep"] == mine["keep"][:n]).all() and (ref["max"] == mine["max"][:n]).all()
                    and (ref["nearest"] == mine["nearest"][:n]).all())
        rate = ref["pairs"] / ref["seconds"]
        full = n == len(texts)
        est = ref["seconds"] if full else mine["pairs"] / rate
        entry = {"rows_run": n, "pairs_run": ref["pairs"], "seconds_run": ref["seconds"], "pairs_per_s": rate,
                 "seconds_full": est, "extrapolated": not full, "identical_decisions": same,
                 "speedup": est / mine["seconds"], "speedup_1_thread": est / mine1["seconds"]}
        out[f"rouge_score_{variant}"] = entry
        how = "measured" if full else f"extrapolated from the first {n:,} rows"
        print(f"  rouge_score ({variant:9s}) {est:9.1f} s  {rate:14,.0f} pairs/s  ({how}); "
              f"identical max/nearest/decisions on {n:,} rows: {same}")
        print(f"    ratio: {entry['speedup']:,.0f}x (all cores), {entry['speedup_1_thread']:,.0f}x (1 thread)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller reference samples")
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"needs {DATA} (../shared/data beside the checkout)")
    budget = 20.0 if args.quick else 90.0
    seeds, alpaca, _ = seeds_and_alpaca()
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()},
               "command": "python benchmarks/rouge_filter.py" + (" --quick" if args.quick else ""),
               "runs": []}
    results["runs"].append(compare("alpaca+seed instructions (2,175)", alpaca, seeds, 0.7, budget))
    three_k = alpaca + trec_questions()[:825]
    results["runs"].append(compare("3,000 instructions (seeds + Alpaca + TREC), decisions", three_k, seeds, 0.5,
                                   budget * 2, variants=("score_lcs",)))
    results["runs"].append(compare("50,000-row corpus from ../shared/data", corpus_50k(), [], 0.7, budget))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
