"""Side-by-side: dataforge's `filter.rouge_l` greedy pool vs the rouge_score Self-Instruct loop.

    .venv/bin/python benchmarks/rouge_filter.py            # everything (~20 min on 2 cores)
    .venv/bin/python benchmarks/rouge_filter.py --quick    # smaller reference samples
    .venv/bin/python benchmarks/rouge_filter.py --million  # only the 1,000,000-instruction run

dataforge runs two ways: *pruned* (`score_floor` = the threshold, the step's default: a
prefix-filtered token index finds the pairs that could reach the threshold and only those are
scored) and *brute force* (`score_floor=0`: every pair scored, bit-parallel, in blocks). Both must
make the same decisions; the script checks it on every run where brute force runs.

Corpora (read from ../shared/data, never copied): the 2,175 Alpaca + seed instructions; a
50,000-row corpus of texts from ../shared/data (Alpaca instructions/inputs/outputs, seed tasks,
SST-2, MR, subj, TREC, SMS spam, GSM8K questions), shuffled with a fixed seed; and 1,000,000
perturbed instructions (`perturbed_instructions`): each row is one of the 8,125 seed, Alpaca and
TREC instructions/questions, picked uniformly, with a share of its words edited (0, 5, 10, 20, 30,
45 or 60 %, picked uniformly; an edit deletes a word, inserts or substitutes a word drawn from the
same texts, or swaps two neighbours) and, one row in ten, a filler word in front.

The reference is the Self-Instruct loop written with rouge_score: each new instruction is scored
against the seeds plus every instruction kept so far, and dropped when the best F reaches the
threshold. Two variants are timed: the original `scorer.score` per pair (re-tokenizes both
texts), and Stanford Alpaca's variant that tokenizes once and calls `rouge_scorer._score_lcs`.
Both run single-process; a process pool (as in the originals) cannot beat 2x on 2 cores, and its
per-instruction startup makes it slower on short pools, so dataforge is also timed on one thread.
Where the reference would take too long it runs on the first rows only (its keep/max/nearest are
compared with dataforge's on those rows) and its full time is extrapolated: pairs the full run
compares / its pairs/s. For the 50,000-row corpus that rate comes from pairs drawn uniformly from
the whole run, since the first rows are not a fair sample of text lengths. The 3,000-instruction
run is the decision check: there the reference runs to the end. On the 1,000,000-row corpus brute
force runs on the first 50,000 rows (decisions compared with the pruned run's first 50,000), and
both run on 30,000 rows drawn at random from it; brute force's full time is extrapolated at its
pairs/s on the first 50,000 rows (likely an over-estimate: with a pool that small its blocks
are small, and its pairs/s grows with the pool), the rouge_score loop's from pairs sampled over
the whole run.
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


def perturbed_instructions(n: int, seed: int = 0) -> list[str]:
    """`n` instructions: seed, Alpaca and TREC texts with a random share of their words edited
    (see the module docstring)."""
    seeds, alpaca, _ = seeds_and_alpaca()
    trec = trec_questions() + _after_label(_lines(DATA / "classification" / "trec" / "test.txt"))
    bases = seeds + alpaca + trec
    words = [w for t in bases for w in t.split()]
    fillers = ["Please", "Briefly,", "Now", "Quickly", "Again,", "Also"]
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        toks = rnd.choice(bases).split()
        for _ in range(round(rnd.choice((0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6)) * len(toks))):
            op, i = rnd.random(), rnd.randrange(len(toks)) if toks else 0
            if op < 0.3 and toks:
                del toks[i]
            elif op < 0.6:
                toks.insert(i, rnd.choice(words))
            elif op < 0.85 and toks:
                toks[i] = rnd.choice(words)
            elif len(toks) > 1:
                j = min(i + 1, len(toks) - 1)
                toks[i], toks[j] = toks[j], toks[i]
        if rnd.random() < 0.1:
            toks.insert(0, rnd.choice(fillers))
        out.append(" ".join(toks))
    return out


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
        keep.append(top < threshold)
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


def ours(texts: list[str], seeds: list[str], threshold: float, workers: int, score_floor: float = 0.0) -> dict:
    """dataforge's greedy filter; the median of 3 runs when one takes under 5 s (timings on a busy
    2-core machine jump around). `score_floor=threshold` is the pruned filter, 0 brute force."""
    times = []
    while True:
        t0 = time.perf_counter()
        r = greedy_filter(texts, threshold, seeds, workers=workers, score_floor=score_floor)
        times.append(time.perf_counter() - t0)
        if len(times) == 3 or times[0] >= 5:
            break
    seconds = float(np.median(times))
    return {"keep": r.keep, "max": r.max_score, "nearest": r.nearest, "seconds": seconds,
            "pairs": pairs_compared(r.keep, len(seeds))}


def sampled_rate(texts: list[str], seeds: list[str], keep: np.ndarray, variant: str, n: int, seed: int = 0) -> dict:
    """rouge_score's pairs/s on `n` pairs drawn uniformly from the pairs the full run compares.

    Also checks that dataforge's F equals rouge_score's on every sampled pair.
    """
    from dataforge.textsim import rouge_l_f

    pool_before = len(seeds) + np.concatenate([[0], np.cumsum(keep)[:-1]])
    kept_rows = np.nonzero(keep)[0]
    rnd = np.random.default_rng(seed)
    rows = rnd.choice(len(texts), size=n, p=pool_before / pool_before.sum())
    pairs = []
    for i in rows:
        j = int(rnd.integers(pool_before[i]))
        other = seeds[j] if j < len(seeds) else texts[kept_rows[j - len(seeds)]]
        pairs.append((texts[i], other))
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    if variant == "score":
        t0 = time.perf_counter()
        ref = [scorer.score(a, b)["rougeL"].fmeasure for a, b in pairs]
    else:
        toks = [(scorer._tokenizer.tokenize(a), scorer._tokenizer.tokenize(b)) for a, b in pairs]
        t0 = time.perf_counter()
        ref = [rouge_scorer._score_lcs(a, b).fmeasure for a, b in toks]
    seconds = time.perf_counter() - t0
    same = all(rouge_l_f(a, b) == f for (a, b), f in zip(pairs, ref))
    return {"pairs": n, "seconds": seconds, "pairs_per_s": n / seconds, "identical_scores": same}


def compare(name: str, texts: list[str], seeds: list[str], threshold: float, ref_budget_s: float | None,
            variants: tuple[str, ...] = ("score", "score_lcs"), sample_pairs: int = 0,
            one_thread: bool = True) -> dict:
    """Run ours and the reference variants; print and return the numbers.

    The reference runs the loop in order for `ref_budget_s` seconds (None: to the end) and its
    decisions are compared on the rows it finished. With `sample_pairs`, its pairs/s for the
    extrapolation comes from that many pairs drawn uniformly from the whole run instead (the
    first rows of a corpus are not a fair sample of its text lengths).
    """
    out: dict = {"corpus": name, "rows": len(texts), "seeds": len(seeds), "threshold": threshold}
    mine = ours(texts, seeds, threshold, workers=-1)
    out["kept"] = int(mine["keep"].sum())
    out["pairs"] = mine["pairs"]
    out["dataforge"] = {"seconds": mine["seconds"], "pairs_per_s": mine["pairs"] / mine["seconds"]}
    print(f"\n{name}: {len(texts):,} rows + {len(seeds)} seeds, threshold {threshold}: "
          f"kept {out['kept']:,}, {mine['pairs']:,} pairs")
    print(f"  dataforge (all cores) {mine['seconds']:10.2f} s  {out['dataforge']['pairs_per_s']:14,.0f} pairs/s")
    pruned = ours(texts, seeds, threshold, workers=-1, score_floor=threshold)
    same = _same_decisions(pruned, mine)
    out["dataforge_pruned"] = {"seconds": pruned["seconds"], "identical_decisions_to_brute_force": same,
                               "speedup_vs_brute_force": mine["seconds"] / pruned["seconds"]}
    print(f"  dataforge pruned      {pruned['seconds']:10.2f} s  ({mine['seconds'] / pruned['seconds']:.1f}x brute "
          f"force; same keep, and max/nearest of dropped rows: {same})")
    mine1 = None
    if one_thread:
        mine1 = ours(texts, seeds, threshold, workers=1)
        assert (mine["keep"] == mine1["keep"]).all() and (mine["max"] == mine1["max"]).all()
        out["dataforge"].update(seconds_1_thread=mine1["seconds"], pairs_per_s_1_thread=mine1["pairs"] / mine1["seconds"])
        print(f"  dataforge (1 thread)  {mine1['seconds']:10.2f} s  {mine1['pairs'] / mine1['seconds']:14,.0f} pairs/s")
    for variant in variants:
        ref = reference_loop(texts, seeds, threshold, variant, budget_s=ref_budget_s)
        n = ref["rows"]
        same = bool((ref["keep"] == mine["keep"][:n]).all() and (ref["max"] == mine["max"][:n]).all()
                    and (ref["nearest"] == mine["nearest"][:n]).all())
        full = n == len(texts)
        entry = {"rows_run": n, "pairs_run": ref["pairs"], "seconds_run": ref["seconds"],
                 "pairs_per_s_run": ref["pairs"] / ref["seconds"], "identical_decisions_on_rows_run": same}
        rate = entry["pairs_per_s_run"]
        how = "measured" if full else f"extrapolated at the rate of its first {n:,} rows"
        if sample_pairs and not full:
            sample = sampled_rate(texts, seeds, mine["keep"], variant, sample_pairs)
            entry["sampled"] = sample
            rate = sample["pairs_per_s"]
            how = (f"extrapolated at the rate of {sample_pairs:,} pairs sampled from the whole run; "
                   f"F identical on them: {sample['identical_scores']}")
        est = ref["seconds"] if full else mine["pairs"] / rate
        entry.update(pairs_per_s=rate, seconds_full=est, extrapolated=not full, speedup=est / mine["seconds"])
        if mine1 is not None:
            entry["speedup_1_thread"] = est / mine1["seconds"]
        out[f"rouge_score_{variant}"] = entry
        print(f"  rouge_score ({variant}) {est:10.1f} s  {rate:14,.0f} pairs/s  ({how})")
        print(f"    identical keep/max/nearest on the {n:,} rows it ran: {same}")
        ratio = f"    ratio: {entry['speedup']:,.0f}x (all cores)"
        if mine1 is not None:
            ratio += f", {entry['speedup_1_thread']:,.0f}x (dataforge on 1 thread)"
        print(ratio)
    return out


def _same_decisions(pruned: dict, brute: dict, rows: int | None = None) -> bool:
    """Same keep on every row, same best score and nearest row on every dropped row."""
    k = brute["keep"] if rows is None else brute["keep"][:rows]
    p = {key: v[:len(k)] for key, v in pruned.items() if key in ("keep", "max", "nearest")}
    drop = ~k
    return bool((p["keep"] == k).all() and (p["max"][drop] == brute["max"][:len(k)][drop]).all()
                and (p["nearest"][drop] == brute["nearest"][:len(k)][drop]).all())


def million(n: int = 1_000_000, brute_rows: int = 50_000, sample_pairs: int = 10_000) -> dict:
    """The pruned filter on `n` perturbed instructions; brute force and rouge_score where they can run."""
    t0 = time.perf_counter()
    texts = perturbed_instructions(n)
    print(f"\n{n:,} perturbed instructions (built in {time.perf_counter() - t0:.1f} s), threshold 0.7, no seeds")
    t0 = time.perf_counter()
    r = greedy_filter(texts, 0.7, score_floor=0.7)
    seconds = time.perf_counter() - t0
    pruned = {"keep": r.keep, "max": r.max_score, "nearest": r.nearest}
    pairs = pairs_compared(r.keep, 0)
    out: dict = {"corpus": f"{n:,} perturbed seed/Alpaca/TREC instructions", "rows": n, "seeds": 0,
                 "threshold": 0.7, "kept": int(r.keep.sum()), "pairs_brute_force_compares": pairs,
                 "dataforge_pruned": {"seconds": seconds}}
    print(f"  dataforge pruned      {seconds:10.1f} s  kept {out['kept']:,}; brute force would compare {pairs:,} pairs")
    brute = ours(texts[:brute_rows], [], 0.7, workers=-1)
    same = _same_decisions(pruned, brute, brute_rows)
    t0 = time.perf_counter()
    greedy_filter(texts[:brute_rows], 0.7, score_floor=0.7)
    pruned_sample = time.perf_counter() - t0
    rate = brute["pairs"] / brute["seconds"]
    out["dataforge_brute_force"] = {
        "rows_run": brute_rows, "seconds_run": brute["seconds"], "pairs_per_s_run": rate,
        "pruned_seconds_on_those_rows": pruned_sample,
        "identical_decisions_on_rows_run": same, "seconds_full": pairs / rate, "extrapolated": True}
    print(f"  dataforge brute force {pairs / rate:10.1f} s  (extrapolated at its {rate:,.0f} pairs/s on the first "
          f"{brute_rows:,} rows: {brute['seconds']:.1f} s there, pruned {pruned_sample:.1f} s)")
    print(f"    same keep, and max/nearest of dropped rows, on those {brute_rows:,} rows: {same}")
    # A second sample: 30,000 rows drawn at random from the million (in their order), both ways.
    pick = np.sort(np.random.default_rng(1).choice(n, size=min(30_000, n), replace=False))
    sub = [texts[i] for i in pick]
    sub_brute = ours(sub, [], 0.7, workers=-1)
    sub_pruned = greedy_filter(sub, 0.7, score_floor=0.7)
    sub_same = _same_decisions({"keep": sub_pruned.keep, "max": sub_pruned.max_score, "nearest": sub_pruned.nearest},
                               sub_brute)
    out["random_sample_check"] = {"rows": len(sub), "kept": int(sub_brute["keep"].sum()),
                                  "identical_decisions": sub_same}
    print(f"    and on {len(sub):,} rows drawn at random from the million, filtered both ways: {sub_same}")
    sample = sampled_rate(texts, [], r.keep, "score_lcs", sample_pairs)
    est = pairs / sample["pairs_per_s"]
    out["rouge_score_score_lcs"] = {"sampled": sample, "seconds_full": est, "extrapolated": True,
                                    "speedup": est / seconds}
    out["dataforge_pruned"]["speedup_vs_brute_force"] = (pairs / rate) / seconds
    print(f"  rouge_score (score_lcs) {est / 3600:8.1f} h  (extrapolated at the rate of {sample_pairs:,} pairs sampled "
          f"from the whole run; F identical on them: {sample['identical_scores']})")
    print(f"    ratio: {est / seconds:,.0f}x vs rouge_score, {(pairs / rate) / seconds:,.1f}x vs brute force")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller reference samples")
    ap.add_argument("--million", action="store_true", help="only the 1,000,000-instruction run")
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"needs {DATA} (../shared/data beside the checkout)")
    budget = 10.0 if args.quick else 45.0
    seeds, alpaca, _ = seeds_and_alpaca()
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()},
               "command": "python benchmarks/rouge_filter.py" + (" --quick" if args.quick else "")
               + (" --million" if args.million else ""),
               "runs": []}
    if args.million:
        results["runs"].append(million())
        out = OUT.with_name("rouge_filter_million.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {out}")
        return
    results["runs"].append(compare("Alpaca + seed instructions (2,175)", alpaca, seeds, 0.7, budget))
    three_k = alpaca + trec_questions()[:825]
    results["runs"].append(compare("3,000 instructions (175 seeds + 2,000 Alpaca + 825 TREC)", three_k, seeds, 0.5,
                                   budget if args.quick else None, variants=("score_lcs",)))
    results["runs"].append(compare("50,000-row corpus from ../shared/data", corpus_50k(), [], 0.7, budget / 2,
                                   sample_pairs=2_000 if args.quick else 10_000, one_thread=False))
    results["runs"].append(million(sample_pairs=2_000 if args.quick else 10_000))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
