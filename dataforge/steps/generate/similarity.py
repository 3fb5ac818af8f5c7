"""The instruction pool of a generator: ROUGE-L near-duplicate filtering with `RougePool`, plus the
reference output's `most_similar` / `avg_similarity_score` for every text it keeps.

A text is dropped when its best ROUGE-L F against the pool (the seeds and every text kept so far,
earlier texts of the same batch included) is at least `threshold`: the comparison `filter.rouge_l`
uses. Self-Instruct's code drops only above 0.7; the two differ only at exact equality. Every text
offered is scored against the whole pool in one SIMD pass (`RougePool.filter_greedy_scored`), which
the neighbour lists need for kept texts anyway; scores are exact, equal to rouge_score's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# textsim (rouge_score, rapidfuzz) is imported when a pool is made: loading the registry stays light.


@dataclass
class Verdict:
    """What the pool decided about one offered text."""

    keep: bool
    score: float
    """Best ROUGE-L F against the pool (0 when the pool was empty)."""
    nearest: str | None
    """The pool text reaching `score` (None when `score` is 0)."""
    most_similar: dict[str, float] | None = None
    """Kept texts: up to `top_k` pool texts with their F, best first (ties: earlier first)."""
    avg_similarity: float | None = None
    """Kept texts: mean F against the whole pool as it was when the text arrived."""


class InstructionPool:
    """Seeds and kept texts, in order; `offer(texts)` filters a batch and grows the pool."""

    def __init__(self, seeds: Sequence[str], *, threshold: float = 0.7, top_k: int = 10,
                 use_stemmer: bool = False, workers: int = -1):
        from dataforge.textsim import RougePool

        self.threshold = threshold
        self.top_k = top_k
        self.workers = workers
        self.pool = RougePool(use_stemmer=use_stemmer, workers=workers)
        self.texts: list[str] = []
        self._serial_text: dict[int, int] = {}
        self._add(list(seeds))

    def __len__(self) -> int:
        return len(self.texts)

    def _add(self, texts: list[str]) -> None:
        first = self.pool.seen
        self.pool.add(texts)
        for i, t in enumerate(texts):
            self._serial_text[first + i] = len(self.texts)
            self.texts.append(t)

    def offer(self, texts: Sequence[str]) -> list[Verdict]:
        """Decide each text in order; kept ones join the pool (and count for the texts after them)."""
        if not texts:
            return []
        first = self.pool.seen
        res, rows = self.pool.filter_greedy_scored(list(texts), self.threshold)
        out = []
        for i, t in enumerate(texts):
            j = int(res.nearest[i])
            near = self.texts[self._serial_text[j]] if j >= 0 and j in self._serial_text else None
            out.append(Verdict(bool(res.keep[i]), float(res.max_score[i]), near))
            row = rows[i]
            if row is not None:
                out[-1].most_similar, out[-1].avg_similarity = self._describe(row)
                self._serial_text[first + i] = len(self.texts)
                self.texts.append(t)
        return out

    def _describe(self, row: np.ndarray) -> tuple[dict[str, float], float]:
        """most_similar and avg_similarity of a kept text from its F against the pool it met on arrival
        (`row` follows `self.texts`)."""
        n = len(row)
        if n == 0:
            return {}, 0.0
        cand = np.arange(n)
        if n > self.top_k > 0:  # only texts scoring at least the k-th best can be in the top k
            cand = np.nonzero(row >= np.partition(row, n - self.top_k)[n - self.top_k])[0]
        order = cand[np.lexsort((cand, -row[cand]))][: self.top_k]
        top: dict[str, float] = {}
        for j in order.tolist():
            top.setdefault(self.texts[j], float(row[j]))
        return top, float(row.mean())
