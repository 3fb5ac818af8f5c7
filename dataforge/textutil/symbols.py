"""Symbol-tuning label pools and per-prompt symbol sampling (Wei et al., 2023, "Symbol tuning").

A symbol is, with equal chance, an integer, a letter string (A, B, ..., Z, AA, AB, ...) or an
English word. The training pool holds integers and letter strings of index 0-9,999 and the
10,000 most frequent alphabetic English words (from `wordfreq`); the held-out pool, for
evaluation, holds indices 10,000-99,999 and the next 20,000 words by frequency. The two pools
are disjoint (case-sensitively: letter strings are upper case, words lower case).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np
import polars as pl

from dataforge.textutil.randomness import integers

PoolName = Literal["train", "heldout"]
TRAIN_INDICES = (0, 10_000)
HELDOUT_INDICES = (10_000, 100_000)
TRAIN_WORDS = (0, 10_000)
HELDOUT_WORDS = (10_000, 30_000)


def letter_string(i: int) -> str:
    """The i-th letter string in bijective base 26: 0 -> A, 25 -> Z, 26 -> AA, 27 -> AB, ..."""
    out = []
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        out.append(chr(65 + r))
    return "".join(reversed(out))


@functools.cache
def english_words() -> tuple[str, ...]:
    """Alphabetic ASCII English words, most frequent first (wordfreq's `best` list)."""
    import wordfreq

    return tuple(w for w in wordfreq.top_n_list("en", 60_000) if w.isascii() and w.isalpha())


@dataclass(frozen=True)
class SymbolPool:
    """All symbols of one pool, grouped by kind: `symbols[offsets[k]:offsets[k+1]]` is kind k."""

    name: str
    symbols: pl.Series
    offsets: np.ndarray
    """Start of each kind (integers, letter strings, words) and the end, length 4."""
    folded: np.ndarray
    """An integer per symbol; equal for symbols that are equal ignoring case."""

    def __len__(self) -> int:
        return self.symbols.len()


@functools.cache
def symbol_pool(name: PoolName) -> SymbolPool:
    """The training (`train`) or held-out (`heldout`) pool."""
    lo, hi = TRAIN_INDICES if name == "train" else HELDOUT_INDICES
    wlo, whi = TRAIN_WORDS if name == "train" else HELDOUT_WORDS
    words = english_words()[wlo:whi]
    kinds = [[str(i) for i in range(lo, hi)], [letter_string(i) for i in range(lo, hi)], list(words)]
    flat = [s for k in kinds for s in k]
    offsets = np.cumsum([0] + [len(k) for k in kinds])
    symbols = pl.Series("symbol", flat, dtype=pl.Utf8)
    folded = symbols.str.to_lowercase().rank("dense").to_numpy().astype(np.int64)
    return SymbolPool(name, symbols, offsets, folded)


def sample_symbols(keys: np.ndarray, n_classes: int, pool: SymbolPool, seed: int,
                   banned: Iterable[str] = (), max_rounds: int = 64) -> np.ndarray:
    """Pool indices, shape (len(keys), n_classes): distinct symbols (ignoring case) per row.

    Each symbol's kind is drawn uniformly from the three kinds, then a symbol of that kind
    uniformly. Symbols equal (ignoring case) to a `banned` string - the task's natural
    labels - are never drawn. A row whose draw collides is redrawn with the next counter,
    so the result for a row depends only on (seed, key).
    """
    n = keys.shape[0]
    banned_folded = {b.lower() for b in banned}
    lower = pool.symbols.str.to_lowercase()
    bad_symbol = np.zeros(len(pool), dtype=bool)
    if banned_folded:
        bad_symbol = lower.is_in(list(banned_folded)).to_numpy()
    sizes = np.diff(pool.offsets)
    out = np.zeros((n, n_classes), dtype=np.int64)
    todo = np.arange(n)
    for rnd in range(max_rounds):
        if todo.size == 0:
            return out
        k = keys[todo][:, None]
        counter = np.arange(n_classes)[None, :] + rnd * n_classes
        kind = integers(k, seed, "symbol-kind", 3, counter)
        idx = integers(k, seed, "symbol-index", sizes[kind], counter)
        flat = pool.offsets[kind] + idx
        out[todo] = flat
        f = np.sort(pool.folded[flat], axis=1)
        bad = bad_symbol[flat].any(axis=1)
        if n_classes > 1:
            bad |= (f[:, 1:] == f[:, :-1]).any(axis=1)
        todo = todo[bad]
    raise RuntimeError("could not draw distinct symbols; is the pool almost all banned?")
