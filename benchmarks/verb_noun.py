"""Verb-noun extraction speed: dataforge's `extract_verb_noun` against the Self-Instruct style loop.

Reference: the Self-Instruct analysis parses each instruction with `nlp(text)` on the full
`en_core_web_sm` pipeline (benepar aside), one call per instruction. dataforge streams
`nlp.pipe` batches with only the parse components enabled and lemmatises two tokens per text.

    .venv/bin/python benchmarks/verb_noun.py [--repeat 3] [--n-process 1]

Reads ../shared/data (Alpaca first 2,000 + the 175 seed instructions); skips when absent.
"""

from __future__ import annotations

import argparse
import sys
import time

from corpus import DATA, alpaca_and_seed_instructions


def load_instructions() -> list[str]:
    return alpaca_and_seed_instructions()


def reference(texts: list[str], name: str) -> list[tuple[str | None, str | None]]:
    """One `nlp(text)` per instruction on the full pipeline; root verb and its dobj noun."""
    import spacy

    nlp = spacy.load(name)
    out = []
    for t in texts:
        sent = next(iter(nlp(t).sents))
        root = sent.root
        if root.pos_ != "VERB":
            out.append((None, None))
            continue
        noun = next((c.lemma_ for c in root.children if c.dep_ == "dobj" and c.pos_ == "NOUN"), None)
        out.append((root.lemma_.lower(), noun.lower() if noun else None))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="copies of the corpus to parse (more = steadier)")
    ap.add_argument("--n-process", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    if args.n_process > 1:
        print("note: CPU-second rates count only the parent process when n_process > 1")
    if not DATA.exists():
        print(f"skipped: {DATA} not found (../shared/data is not beside this checkout)")
        return 0
    from dataforge.textutil.verbnoun import default_pipeline, extract_verb_noun, load_pipeline

    texts = load_instructions() * args.repeat
    name = default_pipeline()
    load_pipeline(name)  # load time is not parse time
    extract_verb_noun(texts[:200], pipeline=name)
    t0, c0 = time.perf_counter(), time.process_time()
    verbs, nouns = extract_verb_noun(texts, pipeline=name, batch_size=args.batch_size, n_process=args.n_process)
    ours, ours_cpu = len(texts) / (time.perf_counter() - t0), len(texts) / (time.process_time() - c0)

    ref_texts = texts[: len(texts) // args.repeat]
    reference(ref_texts[:50], name)
    t0, c0 = time.perf_counter(), time.process_time()
    ref = reference(ref_texts, name)
    theirs, theirs_cpu = len(ref_texts) / (time.perf_counter() - t0), len(ref_texts) / (time.process_time() - c0)

    ours_pairs = list(zip(verbs, nouns))[: len(ref_texts)]
    both_root = [(a, b) for a, b in zip(ours_pairs, ref) if b[0] is not None]
    agree = sum(a == b for a, b in both_root) / max(len(both_root), 1)
    found = sum(v is not None and n is not None for v, n in zip(verbs, nouns)) / len(verbs)
    print(f"pipeline {name}, {len(texts):,} instructions (n_process={args.n_process}, batch_size={args.batch_size})")
    print("                              wall-clock  per CPU-second (what one free core does)")
    print(f"dataforge extract_verb_noun : {ours:8.0f}/s  {ours_cpu:8.0f}/s")
    print(f"reference nlp(text) per row : {theirs:8.0f}/s  {theirs_cpu:8.0f}/s")
    print(f"speed-up                    : {ours / theirs:8.2f}x  {ours_cpu / theirs_cpu:8.2f}x")
    import os

    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"pairs found: {found:.1%} of instructions; agreement with the reference where its root is a verb: "
          f"{agree:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
