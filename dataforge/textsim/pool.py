"""Near-duplicate filtering by ROUGE-L: the Self-Instruct greedy pool and a reference-set check.

Self-Instruct keeps a new instruction unless its best ROUGE-L F against the seeds and every
instruction kept before it reaches 0.7 (dataforge's contract: ROUGE-L >= threshold is a near
duplicate; Self-Instruct's code drops only > 0.7, which differs at exact equality). `RougePool`
does the same, bit for bit, in blocks: a block of candidates is scored against the whole pool
at once on every core, then the block is resolved in order against its own kept rows.

Every text given to a pool (added, or offered to `filter_greedy`) gets the next serial number,
starting at 0; `nearest` reports those numbers. So `greedy_filter(texts, reference=ref)` reports
indexes into `[*ref, *texts]`.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel, LCSseq

from dataforge.textsim.rouge import code_lengths, f_measure
from dataforge.textsim.tokens import RougeTokens

# Candidate margin of the float32 pre-pass. Its scores are within ~1.2e-7 of the exact F, so a
# pair whose exact F ties or beats a row's best is within ~2.4e-7 of the row's float32 best.
_MARGIN = 1e-5
# Above this many tokens in a pair, LCS lengths are not recovered from float32 scores.
_RECOVERABLE_TOKENS = 1 << 20
# Cells of the (block x pool) score matrix computed at once, and the bounds on a greedy block.
_CELLS = 1 << 24
_BLOCK_MIN, _BLOCK_MAX = 32, 256
# rapidfuzz scores queries of up to 64 characters (tokens here) several at a time in SIMD lanes.
_SIMD_TOKENS = 64
# Below this many cells a score matrix is computed on one thread.
_PARALLEL_CELLS = 1 << 20


class FilterResult(NamedTuple):
    """Per input text: whether it is kept, its best ROUGE-L F, and the serial number of that match."""

    keep: np.ndarray
    """bool: kept (best F is below the threshold)."""
    max_score: np.ndarray
    """float64: best ROUGE-L F against the pool (0.0 when the pool is empty)."""
    nearest: np.ndarray
    """int64: serial number of the first pool text reaching `max_score`; -1 when `max_score` is 0."""


class RougePool:
    """Texts that new texts are compared with; grows as `filter_greedy` keeps texts.

    `use_stemmer` is rouge_score's option; `workers` is the number of threads (-1: every core).
    """

    def __init__(self, texts: Iterable[str] = (), *, use_stemmer: bool = False, workers: int = -1) -> None:
        self.tokens = RougeTokens(use_stemmer)
        self.workers = workers
        self._codes: list[str] = []
        self._lens = np.zeros(0, dtype=np.int64)
        self._serials = np.zeros(0, dtype=np.int64)
        self.seen = 0
        """Serial number the next text will get."""
        self.add(texts)

    def __len__(self) -> int:
        return len(self._codes)

    def add(self, texts: Iterable[str]) -> None:
        """Add texts to the pool unconditionally (seeds, a reference set)."""
        self._add_codes(self.tokens.encode_all(texts))

    def best(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Best F of each text against the pool and the serial number of that match (-1 if F is 0)."""
        codes = self.tokens.encode_all(texts)
        return self._best(codes, code_lengths(codes))

    def filter_greedy(self, texts: Sequence[str], threshold: float = 0.7,
                      progress: Callable[[int], None] | None = None) -> FilterResult:
        """Self-Instruct's loop: keep each text only if its best F against the pool is below
        `threshold`; kept texts join the pool before the next text is looked at.

        `progress(n)` is called as each block of `n` texts is decided.
        """
        return self._filter_codes(self.tokens.encode_all(texts), threshold, progress)

    # -- internals ----------------------------------------------------------
    def _add_codes(self, codes: list[str]) -> None:
        self._append(codes, np.arange(self.seen, self.seen + len(codes)))
        self.seen += len(codes)

    def _filter_codes(self, codes: list[str], threshold: float,
                      progress: Callable[[int], None] | None = None) -> FilterResult:
        lens = code_lengths(codes)
        first = self.seen
        self.seen += len(codes)
        keep = np.zeros(len(codes), dtype=bool)
        best = np.zeros(len(codes), dtype=np.float64)
        nearest = np.full(len(codes), -1, dtype=np.int64)
        start = 0
        while start < len(codes):
            size = int(np.clip(_CELLS // max(len(self), 1), _BLOCK_MIN, _BLOCK_MAX))
            stop = min(start + size, len(codes))
            blk, blk_lens = codes[start:stop], lens[start:stop]
            b_score, b_near = self._best(blk, blk_lens)
            in_blk = self._in_block(blk, blk_lens, b_score)
            kept = np.zeros(stop - start, dtype=bool)
            for i in range(stop - start):
                s, j = b_score[i], b_near[i]
                row = in_blk.get(i)
                if row is not None and i:
                    row = row[:i] * kept[:i]  # F against the block's earlier kept rows
                    k = int(row.argmax())
                    if row[k] > s:  # on a tie the earlier pool text stays nearest
                        s, j = row[k], first + start + k
                best[start + i], nearest[start + i] = s, (j if s > 0 else -1)
                kept[i] = s < threshold
            keep[start:stop] = kept
            idx = np.nonzero(kept)[0]
            self._append([blk[i] for i in idx], first + start + idx)
            if progress is not None:
                progress(stop - start)
            start = stop
        return FilterResult(keep, best, nearest)

    def _in_block(self, blk: list[str], lens: np.ndarray, pool_best: np.ndarray) -> dict[int, np.ndarray]:
        """Exact F of block rows against the block's earlier rows, for the rows where one of those
        could reach the row's best against the pool (a float32 bound rules out the others)."""
        if len(blk) < 2:
            return {}
        lower = np.tril(_approx(blk, lens, blk, self.workers), k=-1)
        bound = lower.max(axis=1)
        need = np.nonzero((bound > 0) & (bound + _MARGIN >= pool_best))[0]
        sub = lower[need]
        rr, cc = np.nonzero(sub > 0)
        exact = np.zeros(sub.shape, dtype=np.float64)
        exact[rr, cc] = _exact(sub[rr, cc], blk, lens, need[rr], blk, lens, cc)
        return dict(zip(need.tolist(), exact))

    def _append(self, codes: list[str], serials: np.ndarray) -> None:
        self._codes.extend(codes)
        self._lens = np.concatenate([self._lens, code_lengths(codes)])
        self._serials = np.concatenate([self._serials, serials.astype(np.int64)])

    def _best(self, codes: list[str], lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(codes)
        best = np.zeros(n, dtype=np.float64)
        nearest = np.full(n, -1, dtype=np.int64)
        if not self._codes or not n:
            return best, nearest
        step = max(1, _CELLS // len(self._codes))
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            b, j = self._best_block(codes[lo:hi], lens[lo:hi])
            best[lo:hi] = b
            nearest[lo:hi] = np.where(b > 0, self._serials[np.maximum(j, 0)], -1)
        return best, nearest

    def _best_block(self, codes: list[str], lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact best F and first pool position reaching it, for each of `codes`.

        The float32 pass finds, per row, every pool text within `_MARGIN` of the row's best;
        the exact F-measure of those candidates decides, ties going to the first in pool order.
        """
        approx = _approx(codes, lens, self._codes, self.workers)
        top = approx.max(axis=1)
        rows, cols = np.nonzero((approx >= (top - _MARGIN)[:, None]) & (approx > 0))
        exact = _exact(approx[rows, cols], codes, lens, rows, self._codes, self._lens, cols)
        # Per row: the highest exact F, then the smallest pool position (lexsort: last key first).
        order = np.lexsort((cols, -exact, rows))
        first = np.ones(len(order), dtype=bool)
        first[1:] = rows[order][1:] != rows[order][:-1]
        pick = order[first]
        best = np.zeros(len(codes), dtype=np.float64)
        near = np.full(len(codes), -1, dtype=np.int64)
        best[rows[pick]] = exact[pick]
        near[rows[pick]] = cols[pick]
        return best, near


def _approx(codes_a: list[str], lens_a: np.ndarray, codes_b: list[str], workers: int) -> np.ndarray:
    """float32 `2*lcs/(a+b)` for every pair (Indel's normalized similarity): the F-measure up to rounding."""
    by_len = np.argsort(lens_a, kind="stable")  # rapidfuzz packs similar-length queries into SIMD lanes
    out = np.empty((len(codes_a), len(codes_b)), dtype=np.float32)
    if len(codes_a) * len(codes_b) < _PARALLEL_CELLS:
        workers = 1  # starting threads costs more than it saves on small matrices
    short = by_len[lens_a[by_len] <= _SIMD_TOKENS]
    long_ = by_len[lens_a[by_len] > _SIMD_TOKENS]
    if len(short):
        out[short] = process.cdist([codes_a[i] for i in short], codes_b, scorer=Indel.normalized_similarity,
                                   dtype=np.float32, workers=workers)
    if len(long_):  # long queries get no SIMD lanes; as choices, the other side's short texts fill them
        out[long_] = process.cdist(codes_b, [codes_a[i] for i in long_], scorer=Indel.normalized_similarity,
                                   dtype=np.float32, workers=workers).T
    out[lens_a == 0] = 0.0  # two empty texts are "identical" to Indel but score 0 in ROUGE
    return out


def _exact(approx: np.ndarray, codes_a: list[str], lens_a: np.ndarray, rows: np.ndarray,
           codes_b: list[str], lens_b: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact F-measures of the pairs (codes_a[rows[k]], codes_b[cols[k]]) from their float32 scores.

    The LCS length is recovered as round(score * (a + b) / 2), exact while a + b stays far below
    1 / float32 error; longer pairs get their LCS recomputed.
    """
    a, b = lens_a[rows], lens_b[cols]
    total = a + b
    lcs = np.rint(approx.astype(np.float64) * total / 2).astype(np.int64)
    for k in np.nonzero(total > _RECOVERABLE_TOKENS)[0]:
        lcs[k] = LCSseq.similarity(codes_a[rows[k]], codes_b[cols[k]])
    return f_measure(lcs, a, b)


def greedy_filter(texts: Sequence[str], threshold: float = 0.7, reference: Sequence[str] = (), *,
                  use_stemmer: bool = False, workers: int = -1,
                  progress: Callable[[int], None] | None = None) -> FilterResult:
    """Self-Instruct's ROUGE-L filter over `texts`, in order, starting from the `reference` pool.

    `nearest` indexes `[*reference, *texts]` (always a reference text or a kept text);
    `progress(n)` is called as each block of `n` texts is decided.
    """
    pool = RougePool(use_stemmer=use_stemmer, workers=workers)
    codes = pool.tokens.encode_all([*reference, *texts])  # one vocabulary, ranked over everything
    pool._add_codes(codes[:len(reference)])
    return pool._filter_codes(codes[len(reference):], threshold, progress)


def reference_filter(texts: Sequence[str], reference: Sequence[str], threshold: float = 0.7, *,
                     use_stemmer: bool = False, workers: int = -1) -> FilterResult:
    """Drop each text whose best ROUGE-L F against `reference` reaches `threshold` (eval-set leaks).

    Texts are not compared with each other; `nearest` indexes `reference`.
    """
    pool = RougePool(reference, use_stemmer=use_stemmer, workers=workers)
    best, nearest = pool.best(texts)
    return FilterResult(best < threshold, best, nearest)
