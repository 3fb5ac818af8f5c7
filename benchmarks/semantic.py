"""filter.semantic: encoder throughput vs sentence-transformers, and the blockwise greedy scan vs a row loop.

    .venv/bin/python benchmarks/semantic.py [--n 600] [--scan-copies 5]

Encodes the first N instructions of Alpaca + seeds (../shared/data) with dataforge's encoder and with
`SentenceTransformer(...).encode` on the same bundled MiniLM; checks the embeddings agree; then times
the greedy keep-first scan on the whole corpus (repeated with small noise) against a per-row loop.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from corpus import DATA, alpaca_and_seed_instructions


def loop_scan(emb: np.ndarray, threshold: float) -> np.ndarray:
    """Reference greedy keep-first: each row against the kept rows, one row at a time."""
    kept: list[int] = []
    keep = np.zeros(len(emb), dtype=bool)
    for i in range(len(emb)):
        if not kept or float((emb[kept] @ emb[i]).max()) < threshold:
            keep[i] = True
            kept.append(i)
    return keep


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--scan-copies", type=int, default=5)
    args = ap.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} not found")
        return 0
    from dataforge.steps.filter.semantic import encode, greedy_near_duplicates, load_encoder
    from dataforge.textutil.encoder import default_model_dir

    corpus = alpaca_and_seed_instructions()
    texts = corpus[: args.n]

    load_encoder(None)
    t0 = time.perf_counter()
    ours = encode(texts)
    t_ours = time.perf_counter() - t0
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(default_model_dir()), device="cpu")
    t0 = time.perf_counter()
    ref = st.encode(texts, batch_size=64, normalize_embeddings=True)
    t_ref = time.perf_counter() - t0
    agree = float(np.min(np.sum(ours * ref, axis=1)))
    print(f"encode {len(texts)} instructions: dataforge {len(texts) / t_ours:7.1f}/s, "
          f"sentence-transformers {len(texts) / t_ref:7.1f}/s (ratio {t_ref / t_ours:.2f}x); "
          f"min cosine between the two embeddings of a text: {agree:.5f}")

    full = encode(corpus)
    rng = np.random.default_rng(0)
    big = np.concatenate([full] + [full + rng.normal(scale=0.01, size=full.shape).astype(np.float32)
                                   for _ in range(args.scan_copies - 1)])
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    t0 = time.perf_counter()
    keep, _, _ = greedy_near_duplicates(big, 0.9)
    t_block = time.perf_counter() - t0
    t0 = time.perf_counter()
    keep_ref = loop_scan(big, 0.9)
    t_loop = time.perf_counter() - t0
    assert (keep == keep_ref).all()
    print(f"greedy scan of {len(big):,} rows (threshold 0.9, kept {keep.sum():,}): blockwise {t_block:.2f}s, "
          f"row loop {t_loop:.2f}s (speed-up {t_loop / t_block:.1f}x), same rows kept")
    import os

    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
