"""filter.heuristics throughput: polars rules against a per-row Python loop of the same Self-Instruct rules.

    .venv/bin/python benchmarks/heuristics.py [--copies 50]

The corpus is Alpaca's first 2,000 instructions + the 175 seeds from ../shared/data, repeated
`--copies` times (so dedup has work to do). Skips when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import re
import string
import sys
import time

from corpus import DATA, alpaca_and_seed_instructions


def reference(texts: list[str], blacklist: list[str]) -> list[str | None]:
    """One Python pass per instruction, the way the Self-Instruct scripts filter (plus exact dedup)."""
    patterns = [re.compile(rf"\b{re.escape(w)}\b", re.IGNORECASE) for w in blacklist]
    seen: set[str] = set()
    out: list[str | None] = []
    for t in texts:
        n = len(t.split())
        if n < 3:
            out.append("too_short")
        elif n > 150:
            out.append("too_long")
        elif any(p.search(t) for p in patterns):
            out.append("blacklist")
        elif t.startswith("Write a program"):
            out.append("forbidden_prefix")
        elif t[0] in string.punctuation:
            out.append("leading_punctuation")
        elif not t[0].isascii():
            out.append("non_ascii_start")
        elif " ".join(t.split()) in seen:
            out.append("duplicate")
        else:
            seen.add(" ".join(t.split()))
            out.append(None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=50)
    args = ap.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} not found")
        return 0
    import polars as pl

    from dataforge.steps.filter.heuristics import SELF_INSTRUCT_BLACKLIST, HeuristicsFilter

    texts = (alpaca_and_seed_instructions()) * args.copies
    df = pl.DataFrame({"id": [str(i) for i in range(len(texts))], "instruction": texts})
    step = HeuristicsFilter(id="h", type="filter.heuristics")

    t0 = time.perf_counter()
    res = step.run([df], None)  # type: ignore[arg-type]
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference(texts, SELF_INSTRUCT_BLACKLIST)
    theirs = time.perf_counter() - t0

    print(f"{len(texts):,} instructions; kept {res.df.height:,} (reference loop kept {ref.count(None):,})")
    print(f"dataforge filter.heuristics (polars, NFKC) : {len(texts) / ours:10,.0f} rows/s  ({ours:.2f}s)")
    print(f"per-row Python loop (reference rules)      : {len(texts) / theirs:10,.0f} rows/s  ({theirs:.2f}s)")
    print(f"speed-up                                   : {theirs / ours:10.2f}x")
    print(res.rejections["reason"].value_counts().sort("count", descending=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
