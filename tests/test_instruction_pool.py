"""The generators' instruction pool against Self-Instruct's own computation with rouge_score: same
decisions, best scores, `most_similar` and `avg_similarity_score`, batch after batch."""

from __future__ import annotations

import random

import numpy as np
from rouge_score import rouge_scorer

from dataforge.steps.generate.similarity import InstructionPool

WORDS = ("write explain list the a of poem story about cats rain city river three short plan trip "
         "summarize article compare two ideas for kids in simple words give examples").split()


def texts(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1 and out:
            out.append(rng.choice(out))  # an exact repeat
        elif r < 0.25 and any(out):  # a light edit of an earlier text
            w = rng.choice([t for t in out if t]).split()
            w[rng.randrange(len(w))] = rng.choice(WORDS)
            out.append(" ".join(w))
        elif r < 0.28:
            out.append("")
        else:
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))))
    return out


def test_pool_matches_the_reference_loop_with_rouge_score():
    rng = random.Random(3)
    seeds = texts(rng, 15)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    ref_pool = list(seeds)
    pool = InstructionPool(seeds, threshold=0.7, top_k=10)
    kept = dropped = 0
    for _ in range(12):
        batch = texts(rng, rng.randint(1, 20)) + [rng.choice(ref_pool)]
        verdicts = pool.offer(batch)
        for text, v in zip(batch, verdicts):
            scores = np.array([scorer.score(text, old)["rougeL"].fmeasure for old in ref_pool])
            best = scores.max() if len(scores) else 0.0
            assert v.score == best
            assert v.keep == (best < 0.7)
            if best > 0:
                assert v.nearest == ref_pool[int(np.argmax(scores))]
            if v.keep:
                kept += 1
                order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))[:10]
                expect: dict[str, float] = {}
                for j in order:
                    expect.setdefault(ref_pool[j], float(scores[j]))
                assert v.most_similar == expect
                assert v.avg_similarity == float(scores.mean())
                ref_pool.append(text)  # kept texts count for the rest of the batch, as in the reference
            else:
                dropped += 1
    assert len(pool) == len(ref_pool) and pool.texts == ref_pool
    assert kept > 20 and dropped > 20
