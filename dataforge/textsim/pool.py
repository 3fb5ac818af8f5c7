"""Near-duplicate filtering by ROUGE-L: the Self-Instruct greedy pool and a reference-set check.

Self-Instruct keeps a new instruction unless its best ROUGE-L F against the seeds and every
instruction kept before it reaches 0.7 (dataforge's contract: ROUGE-L >= threshold is a near
duplicate; Self-Instruct's code drops only > 0.7, which differs at exact equality). `RougePool`
does the same, bit for bit, in blocks: a block of candidates is scored against the whole pool
at once on every core, then the block is resolved in order against its own kept rows.

Every text given to a pool (added, or offered to `filter_greedy`) gets the next serial number,
starting at 0; `nearest` reports those numbers. So `greedy_filter(texts, reference=ref)` reports
indexes into `[*ref, *texts]`.

`score_floor` says which scores must be exact. Every pair whose F reaches it is found; a text
whose best F is below it records NaN (and nearest -1): only "below the floor" is known. Decisions
never depend on it (it is at most the threshold, and a dropped text's best reaches the threshold),
so with `score_floor = threshold` only pairs that could reach the threshold are compared: a
prefix-filtered token index (`prefix.py`) finds them and the exact LCS decides. At 0 every pair
is scored (the block-parallel brute force below), and every best F is exact.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel, LCSseq

from dataforge.textsim import prefix
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
# Below this many pairs the exact LCS of candidates is computed on one thread.
_PARALLEL_PAIRS = 1 << 14
# From this score floor on the prefix index is used; below it nearly every pair is a candidate
# and scoring them all in blocks is faster.
_PRUNE_FROM = 0.3
# Texts per block of the pruned greedy loop.
_PRUNED_BLOCK = 2048


class FilterResult(NamedTuple):
    """Per input text: whether it is kept, its best ROUGE-L F, and the serial number of that match."""

    keep: np.ndarray
    """bool: kept (best F is below the threshold)."""
    max_score: np.ndarray
    """float64: exact best ROUGE-L F against the pool when it is at least the call's `score_floor`
    (always for a dropped text); NaN when it is below the floor (> 0). 0.0 when nothing matches
    at floor 0 (or the pool is empty)."""
    nearest: np.ndarray
    """int64: serial number of the first pool text reaching `max_score`; -1 when `max_score` is 0 or NaN."""


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
        self._order = prefix.TokenOrder()
        self._index: prefix.PrefixIndex | None = None  # built on the first pruned call
        self.seen = 0
        """Serial number the next text will get."""
        self.add(texts)

    def __len__(self) -> int:
        return len(self._codes)

    def add(self, texts: Iterable[str]) -> None:
        """Add texts to the pool unconditionally (seeds, a reference set)."""
        self._add_codes(self.tokens.encode_all(texts))

    def best(self, texts: Sequence[str], *, score_floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Best F of each text against the pool and the serial number of that match (-1 if F is 0).

        With `score_floor` > 0, a best F below the floor is NaN (nearest -1) and only pairs that
        can reach the floor are scored.
        """
        _check_floor(score_floor, 1.0)
        codes = self.tokens.encode_all(texts)
        lens = code_lengths(codes)
        if score_floor < _PRUNE_FROM:
            return _floored(*self._best(codes, lens), score_floor)
        index = self._ensure_index(score_floor)
        pre = prefix.prefixes(self._order, codes, lens, index.floor)
        out = np.full(len(codes), np.nan), np.full(len(codes), -1, dtype=np.int64)
        for lo in range(0, len(codes), _PRUNED_BLOCK):
            hi = min(lo + _PRUNED_BLOCK, len(codes))
            b, j = self._best_pruned(codes[lo:hi], lens[lo:hi], pre.slice(lo, hi), score_floor)
            out[0][lo:hi], out[1][lo:hi] = b, self._serial_of(j)
        return out

    def filter_greedy(self, texts: Sequence[str], threshold: float = 0.7,
                      progress: Callable[[int], None] | None = None, *,
                      score_floor: float = 0.0) -> FilterResult:
        """Self-Instruct's loop: keep each text only if its best F against the pool is below
        `threshold`; kept texts join the pool before the next text is looked at.

        `progress(n)` is called as each block of `n` texts is decided. `score_floor` (0 to
        `threshold`) is where `max_score` stops being exact (NaN below it); the decisions are the
        same whatever it is, and at `threshold` only pairs that could reach it are scored.
        """
        return self._filter_codes(self.tokens.encode_all(texts), threshold, progress, score_floor)

    def filter_greedy_scored(self, texts: Sequence[str],
                             threshold: float = 0.7) -> tuple[FilterResult, list[np.ndarray | None]]:
        """`filter_greedy` (scores exact everywhere) that also returns, for each kept text, its exact F
        against every pool text it met, in pool order: the pool before the call, then the call's
        earlier kept texts (None for a dropped text). What a generator needs to list a kept text's
        nearest neighbours and its mean similarity, as Self-Instruct's output does; every pair with the
        pool is scored (one float32 SIMD pass), so it suits batches, not millions of texts at once."""
        codes = self.tokens.encode_all(texts)
        lens = code_lengths(codes)
        n = len(codes)
        first = self.seen
        self.seen += n
        approx = _approx(codes, lens, self._codes, self.workers) if self._codes and n else None
        if approx is not None:
            pool_best, pool_near = self._best_of(approx, codes, lens)
        else:
            pool_best, pool_near = np.zeros(n), np.full(n, -1, dtype=np.int64)
        within = f_matrix(codes, codes, self.workers) if n > 1 else np.zeros((n, n))
        keep = np.zeros(n, dtype=bool)
        best = np.zeros(n, dtype=np.float64)
        nearest = np.full(n, -1, dtype=np.int64)
        kept: list[int] = []
        for i in range(n):
            s, j = pool_best[i], (self._serials[pool_near[i]] if pool_near[i] >= 0 else -1)
            if kept:
                w = within[i, kept]
                k = int(w.argmax())
                if w[k] > s:  # on a tie the earlier pool text stays nearest
                    s, j = w[k], first + kept[k]
            best[i], nearest[i] = s, (j if s > 0 else -1)
            if s < threshold:
                keep[i] = True
                kept.append(i)
        kept_codes = [codes[i] for i in kept]
        pool_rows = np.zeros((len(kept), len(self._codes))) if approx is None else \
            _exact_rows(approx[kept], lens[kept], self._lens, kept_codes, self._codes)
        rows: list[np.ndarray | None] = [None] * n
        for r, i in enumerate(kept):
            rows[i] = np.concatenate([pool_rows[r], within[i, kept[:r]]])
        if self._index is not None:
            self._index_rows(kept_codes, None)
        self._append(kept_codes, first + np.asarray(kept, dtype=np.int64))
        return FilterResult(keep, best, nearest), rows

    # -- internals ----------------------------------------------------------
    def _add_codes(self, codes: list[str], pre: prefix.Prefixes | None = None) -> None:
        if self._index is not None:
            self._index_rows(codes, pre)
        self._append(codes, np.arange(self.seen, self.seen + len(codes)))
        self.seen += len(codes)

    def _index_rows(self, codes: list[str], pre: prefix.Prefixes | None) -> None:
        """Put texts about to be appended to the pool into the index."""
        assert self._index is not None
        lens = code_lengths(codes)
        if pre is None:
            pre = prefix.prefixes(self._order, codes, lens, self._index.floor)
        self._index.add(pre, len(self._codes) + np.arange(len(codes), dtype=np.int64), lens)

    def _ensure_index(self, floor: float) -> prefix.PrefixIndex:
        """The index, (re)built over the whole pool when missing or cut for a higher floor."""
        if self._index is None or floor < self._index.floor:
            self._index = prefix.PrefixIndex(floor)
            pre = prefix.prefixes(self._order, self._codes, self._lens, floor)
            self._index.add(pre, np.arange(len(self._codes), dtype=np.int64), self._lens)
        return self._index

    def _filter_codes(self, codes: list[str], threshold: float,
                      progress: Callable[[int], None] | None = None, score_floor: float = 0.0,
                      pre: prefix.Prefixes | None = None) -> FilterResult:
        _check_floor(score_floor, threshold)
        if score_floor >= _PRUNE_FROM:
            return self._filter_pruned(codes, threshold, score_floor, progress, pre)
        res = self._filter_brute(codes, threshold, progress)
        return FilterResult(res.keep, *_floored(res.max_score, res.nearest, score_floor))

    def _filter_pruned(self, codes: list[str], threshold: float, floor: float,
                       progress: Callable[[int], None] | None, pre: prefix.Prefixes | None) -> FilterResult:
        """The greedy loop over candidates only, block by block: each block is scored against the
        pool's candidates, then resolved in order against its own earlier kept rows."""
        lens = code_lengths(codes)
        index = self._ensure_index(floor)
        if pre is None:
            pre = prefix.prefixes(self._order, codes, lens, index.floor)
        first = self.seen
        self.seen += len(codes)
        keep = np.zeros(len(codes), dtype=bool)
        best = np.full(len(codes), np.nan)
        nearest = np.full(len(codes), -1, dtype=np.int64)
        for start in range(0, len(codes), _PRUNED_BLOCK):
            stop = min(start + _PRUNED_BLOCK, len(codes))
            blk, blk_lens, blk_pre = codes[start:stop], lens[start:stop], pre.slice(start, stop)
            s, j = self._best_pruned(blk, blk_lens, blk_pre, floor)
            j = self._serial_of(j)
            # Pairs inside the block, best first, then the earliest row.
            q, r = prefix.self_join(blk_pre, blk_lens, floor)
            f = self._scores(blk, blk_lens, q, blk, blk_lens, r)
            sel = f >= floor
            q, r, f = q[sel], r[sel], f[sel]
            order = np.lexsort((r, -f, q))
            q, r, f = q[order], r[order], f[order]
            kept = ~(s >= threshold)  # NaN (nothing reaches the floor) is kept
            bounds = np.searchsorted(q, np.arange(stop - start + 1))
            for i in np.unique(q).tolist():
                for t in range(bounds[i], bounds[i + 1]):
                    k = r[t]
                    if kept[k]:
                        if not f[t] <= s[i]:  # on a tie the earlier pool text stays nearest
                            s[i], j[i] = f[t], first + start + k
                        break
                kept[i] = not s[i] >= threshold
            keep[start:stop], best[start:stop], nearest[start:stop] = kept, s, j
            idx = np.nonzero(kept)[0]
            index.add(blk_pre.take(idx), len(self._codes) + np.arange(len(idx), dtype=np.int64), blk_lens[idx])
            self._append([blk[i] for i in idx], first + start + idx)
            if progress is not None:
                progress(stop - start)
        return FilterResult(keep, best, nearest)

    def _serial_of(self, positions: np.ndarray) -> np.ndarray:
        """Serial numbers of pool positions (-1 stays -1)."""
        if not len(self._serials):
            return positions.copy()
        return np.where(positions >= 0, self._serials[np.maximum(positions, 0)], -1)

    def _best_pruned(self, codes: list[str], lens: np.ndarray, pre: prefix.Prefixes,
                     floor: float) -> tuple[np.ndarray, np.ndarray]:
        """Best F >= `floor` of each text against the pool and the first pool position reaching
        it; NaN and -1 where no pool text reaches the floor."""
        best = np.full(len(codes), np.nan)
        near = np.full(len(codes), -1, dtype=np.int64)
        assert self._index is not None
        q, r = self._index.candidates(pre, lens, self._lens, floor)
        f = self._scores(codes, lens, q, self._codes, self._lens, r)
        sel = f >= floor
        q, r, f = q[sel], r[sel], f[sel]
        order = np.lexsort((r, -f, q))
        first = np.ones(len(order), dtype=bool)
        first[1:] = q[order][1:] != q[order][:-1]
        pick = order[first]
        best[q[pick]], near[q[pick]] = f[pick], r[pick]
        return best, near

    def _scores(self, codes_a: list[str], lens_a: np.ndarray, rows: np.ndarray,
                codes_b: list[str], lens_b: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Exact F of the pairs (codes_a[rows[k]], codes_b[cols[k]])."""
        if not len(rows):
            return np.zeros(0, dtype=np.float64)
        workers = self.workers if len(rows) >= _PARALLEL_PAIRS else 1
        lcs = process.cpdist([codes_a[i] for i in rows.tolist()], [codes_b[i] for i in cols.tolist()],
                             scorer=LCSseq.similarity, dtype=np.int64, workers=workers)
        return f_measure(lcs, lens_a[rows], lens_b[cols])

    def _filter_brute(self, codes: list[str], threshold: float,
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
            if self._index is not None:
                self._index_rows([blk[i] for i in idx], None)
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
        return self._best_of(_approx(codes, lens, self._codes, self.workers), codes, lens)

    def _best_of(self, approx: np.ndarray, codes: list[str], lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`_best_block` from the block's float32 scores against the whole pool."""
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


def f_matrix(codes_a: list[str], codes_b: list[str], workers: int = -1) -> np.ndarray:
    """Exact ROUGE-L F of every pair of encoded texts, shape (len(codes_a), len(codes_b)): the float32
    SIMD pass of the filters with each LCS length recovered from its score (as `_exact` does)."""
    lens_a, lens_b = code_lengths(codes_a), code_lengths(codes_b)
    if not codes_a or not codes_b:
        return np.zeros((len(codes_a), len(codes_b)), dtype=np.float64)
    return _exact_rows(_approx(codes_a, lens_a, codes_b, workers), lens_a, lens_b, codes_a, codes_b)


def _exact_rows(approx: np.ndarray, lens_a: np.ndarray, lens_b: np.ndarray,
                codes_a: list[str] | None = None, codes_b: list[str] | None = None) -> np.ndarray:
    """Exact F of every cell of a float32 score matrix (LCS lengths recovered as in `_exact`; pairs too
    long for that are recomputed from the codes, which must then be given)."""
    total = lens_a[:, None] + lens_b[None, :]
    lcs = np.rint(approx.astype(np.float64) * total / 2).astype(np.int64)
    if len(lens_a) and len(lens_b) and lens_a.max() + lens_b.max() > _RECOVERABLE_TOKENS:
        for r, c in zip(*np.nonzero(total > _RECOVERABLE_TOKENS)):
            assert codes_a is not None and codes_b is not None, "pairs this long need their codes"
            lcs[r, c] = LCSseq.similarity(codes_a[r], codes_b[c])
    return f_measure(lcs, lens_a[:, None], lens_b[None, :])


def greedy_filter(texts: Sequence[str], threshold: float = 0.7, reference: Sequence[str] = (), *,
                  use_stemmer: bool = False, workers: int = -1,
                  progress: Callable[[int], None] | None = None, score_floor: float = 0.0) -> FilterResult:
    """Self-Instruct's ROUGE-L filter over `texts`, in order, starting from the `reference` pool.

    `nearest` indexes `[*reference, *texts]` (always a reference text or a kept text);
    `progress(n)` is called as each block of `n` texts is decided. `score_floor`: see `RougePool.filter_greedy`
    (`score_floor=threshold` is the fast setting: kept texts then record NaN).
    """
    pool = RougePool(use_stemmer=use_stemmer, workers=workers)
    codes = pool.tokens.encode_all([*reference, *texts])  # one vocabulary, ranked over everything
    _check_floor(score_floor, threshold)
    pre = None
    if score_floor >= _PRUNE_FROM:  # one token order, ranked over everything
        pool._ensure_index(score_floor)
        pre = prefix.prefixes(pool._order, codes, code_lengths(codes), score_floor)
    pool._add_codes(codes[:len(reference)], pre.slice(0, len(reference)) if pre else None)
    return pool._filter_codes(codes[len(reference):], threshold, progress, score_floor,
                              pre.slice(len(reference), len(codes)) if pre else None)


def reference_filter(texts: Sequence[str], reference: Sequence[str], threshold: float = 0.7, *,
                     use_stemmer: bool = False, workers: int = -1, score_floor: float = 0.0) -> FilterResult:
    """Drop each text whose best ROUGE-L F against `reference` reaches `threshold` (eval-set leaks).

    Texts are not compared with each other; `nearest` indexes `reference`. `score_floor` as in
    `greedy_filter`.
    """
    _check_floor(score_floor, threshold)
    pool = RougePool(reference, use_stemmer=use_stemmer, workers=workers)
    best, nearest = pool.best(texts, score_floor=score_floor)
    return FilterResult(~(best >= threshold), best, nearest)


def _check_floor(score_floor: float, threshold: float) -> None:
    if not 0.0 <= score_floor <= threshold:
        raise ValueError(f"score_floor must be between 0 and the threshold ({threshold}), got {score_floor}")


def _floored(best: np.ndarray, nearest: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores with the ones below `floor` (> 0) blanked to NaN / -1."""
    if floor <= 0:
        return best, nearest
    low = best < floor
    return np.where(low, np.nan, best), np.where(low, -1, nearest)
