"""The instruction pool of a generator: ROUGE-L near-duplicate filtering with `RougePool`, plus the
reference output's `most_similar` / `avg_similarity_score` for every text it keeps.

A text is dropped when its best ROUGE-L F against the pool (the seeds and every text kept so far,
earlier texts of the same batch included) is at least `threshold`: the comparison `filter.rouge_l`
uses. Self-Instruct's code drops only above 0.7; the two differ only at exact equality.
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
        self._codes: list[str] = []
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
        self._codes.extend(self.pool.tokens.encode_all(texts))

    def offer(self, texts: Sequence[str]) -> list[Verdict]:
        """Decide each text in order; kept ones join the pool (and count for the texts after them)."""
        if not texts:
            return []
        first = self.pool.seen
        before = len(self.texts)
        res = self.pool.filter_greedy(list(texts), self.threshold)
        kept_idx = np.nonzero(res.keep)[0]
        for k in kept_idx.tolist():
            self._serial_text[first + k] = len(self.texts)
            self.texts.append(texts[k])
        kept_codes = self.pool.tokens.encode_all([texts[k] for k in kept_idx.tolist()])
        self._codes.extend(kept_codes)
        out = []
        for i, t in enumerate(texts):
            j = int(res.nearest[i])
            near = self.texts[self._serial_text[j]] if j >= 0 and j in self._serial_text else None
            out.append(Verdict(bool(res.keep[i]), float(res.max_score[i]), near))
        if len(kept_idx):
            self._describe(kept_idx, kept_codes, before, out)
        return out

    def _describe(self, kept_idx: np.ndarray, kept_codes: list[str], before: int, out: list[Verdict]) -> None:
        """most_similar / avg_similarity of the kept texts, each against the pool it met on arrival."""
        from dataforge.textsim.rouge import code_lengths, f_measure, lcs_matrix

        lens = code_lengths(self._codes)
        scores = f_measure(lcs_matrix(kept_codes, self._codes, self.workers),
                           code_lengths(kept_codes)[:, None], lens[None, :])
        for r, k in enumerate(kept_idx.tolist()):
            n = before + r  # pool size when this text arrived: seeds, earlier kept, earlier kept of this batch
            row = scores[r, :n]
            if n == 0:
                out[k].most_similar, out[k].avg_similarity = {}, 0.0
                continue
            order = np.lexsort((np.arange(n), -row))[: self.top_k]
            top: dict[str, float] = {}
            for j in order.tolist():
                top.setdefault(self.texts[j], float(row[j]))
            out[k].most_similar = top
            out[k].avg_similarity = float(row.mean())
