"""Exact pruning for ROUGE-L thresholds: a prefix-filtered inverted index over token occurrences.

For texts of `m` and `n` tokens with an LCS of `L` tokens, rouge_score's F = 2PR/(P+R) with
P = L/m and R = L/n is 2L/(m+n) (up to float rounding). So F >= f needs L >= need =
ceil(f(m+n)/2) (`min_lcs`, with a slack that float rounding can never beat). L is at most
min(m, n) and at most the multiset overlap of the two token lists, so a pair reaches `f` only if
it shares `need` token occurrences.

Occurrences are made distinct by numbering repeats: the 2nd "the" of a text is the element
("the", 1), so multiset overlap is plain set overlap of elements. Every element gets a rank in
one fixed global order, rarest first (`TokenOrder`); a text's elements are listed in that order.
If two texts share at least `need` elements, the smallest `k` of them lie within the first
`m - need + k` elements of one and the first `n - need + k` of the other (at most `need - k`
shared elements come after them). With k = 1 this is the prefix filter of set-similarity
joins; requiring k = `_K` shared elements (or `need`, if smaller) within those bounds also
discards pairs that share one rare word by chance.

`alpha(m)` (`min_overlap`) is the least `need` of a text of `m` tokens over every partner
length the threshold allows; each text is indexed by its first `m - alpha(m) + _K` elements,
which covers every pair's bound. Whether an element can count depends on both texts' lengths
and on where it sits in each: a query element reads, of its posting list, only the entries whose
text length it can count with, or only those whose own position lets them count for a query
this long, whichever range is shorter (`join`). A pair that passes every filter is a
*candidate*; the exact LCS decides. A pair that is not a candidate cannot reach `f`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Relative slack that keeps the integer bounds below the true ones whatever the float rounding:
# a pair whose rouge_score F reaches `f` is never pruned.
_SLACK = 1e-6
# Shared prefix elements a candidate pair needs (fewer when its `need` is smaller).
_K = 2
# Code points are below 2**21; an element is (repeat number << 21) | code point.
_CODE_BITS = 21
# Hits (query element x indexed element) expanded at once while joining.
_HITS = 1 << 22
# Index sort key: rank (shifted to >= 0) above the indexed text's length.
_RANK_OFFSET = 1 << 29
_LEN_BITS = 33
_LEN_MAX = (1 << _LEN_BITS) - 1
# Join sort key: (query text * width + row) above a hit's slack (clamped; the clamp never prunes).
_SLACK_BITS = 21
_SLACK_MAX = (1 << _SLACK_BITS) - 1


def min_lcs(floor: float, m, n) -> np.ndarray:
    """Least LCS length with which texts of `m` and `n` tokens can reach F >= `floor`."""
    need = floor * (np.asarray(m, dtype=np.float64) + np.asarray(n, dtype=np.float64)) / 2
    return np.ceil(need * (1 - _SLACK)).astype(np.int64)


def min_overlap(floor: float, m) -> np.ndarray:
    """Least `min_lcs` of a text of `m` tokens over every partner length (at least 1).

    The partner needing least is the shortest one the length filter allows, n ~ f*m/(2-f);
    one token shorter than that is used, which can only lower the bound.
    """
    m = np.asarray(m, dtype=np.int64)
    g = floor * (1 - _SLACK)
    n = np.maximum(np.ceil(g * m / (2 - g)).astype(np.int64) - 1, 1)
    return np.maximum(min_lcs(floor, m, np.minimum(n, m)), 1)


def prefix_lengths(floor: float, lens: np.ndarray) -> np.ndarray:
    """Indexed prefix length of texts of `lens` tokens: m - alpha(m) + _K (at most m)."""
    lens = np.asarray(lens, dtype=np.int64)
    if floor > 1:  # no pair reaches it
        return np.zeros_like(lens)
    return np.where(lens > 0, np.clip(lens - min_overlap(floor, lens) + _K, 0, lens), 0)


def elements(codes: Sequence[str], lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner text, element id) of every token of `codes`, grouped by owner.

    Element id = (repeat number << 21) | code point: the k-th repeat of a token in a text is its own element.
    """
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat = np.frombuffer("".join(codes).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    owner = np.repeat(np.arange(len(codes), dtype=np.int64), lens)
    key = (owner << _CODE_BITS) | flat
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.ones(total, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    at = np.arange(total, dtype=np.int64)
    repeat = at - np.maximum.accumulate(np.where(first, at, 0))
    return owner[order], (repeat << _CODE_BITS) | flat[order]


class TokenOrder:
    """The global order of elements, rarest first; an element's rank never changes once given.

    `learn` ranks elements not seen before by how many of the given texts hold them (rarest
    first), all ahead of every element ranked earlier: an element new to a growing pool is rare in it.
    """

    def __init__(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)  # sorted element ids
        self._ranks = np.zeros(0, dtype=np.int64)
        self._low = 0

    def learn(self, ids: np.ndarray) -> None:
        """Give ranks to the unseen elements of `ids` (one entry per text holding the element)."""
        uniq, counts = np.unique(ids, return_counts=True)
        if len(self._ids):
            pos = np.minimum(np.searchsorted(self._ids, uniq), len(self._ids) - 1)
            fresh = self._ids[pos] != uniq
            uniq, counts = uniq[fresh], counts[fresh]
        if not len(uniq):
            return
        if len(uniq) - self._low >= _RANK_OFFSET:
            raise ValueError(f"more than {_RANK_OFFSET:,} distinct token occurrences in one pool")
        rarest_first = uniq[np.argsort(counts, kind="stable")]
        ranks = self._low - len(uniq) + np.arange(len(uniq), dtype=np.int64)
        self._low -= len(uniq)
        ids_all = np.concatenate([self._ids, rarest_first])
        ranks_all = np.concatenate([self._ranks, ranks])
        order = np.argsort(ids_all, kind="stable")
        self._ids, self._ranks = ids_all[order], ranks_all[order]

    def rank(self, ids: np.ndarray) -> np.ndarray:
        """Ranks of known element ids (negative, rarest lowest)."""
        return self._ranks[np.searchsorted(self._ids, ids)]


@dataclass
class Prefixes:
    """The indexed prefix elements of a run of texts: `rank`, `pos` (place in the text's order)
    and `owner` (text index), grouped by owner; `starts[i]:starts[i+1]` are text i's."""

    rank: np.ndarray
    pos: np.ndarray
    owner: np.ndarray
    starts: np.ndarray

    def slice(self, lo: int, hi: int) -> "Prefixes":
        """Texts lo..hi-1, owners renumbered from 0."""
        a, b = self.starts[lo], self.starts[hi]
        return Prefixes(self.rank[a:b], self.pos[a:b], self.owner[a:b] - lo, self.starts[lo:hi + 1] - a)

    def take(self, rows: np.ndarray) -> "Prefixes":
        """The prefixes of texts `rows` (ascending), owners renumbered 0..len(rows)-1."""
        counts = self.starts[rows + 1] - self.starts[rows]
        idx = _ranges(self.starts[rows], counts)
        owner = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
        return Prefixes(self.rank[idx], self.pos[idx], owner, np.concatenate([[0], np.cumsum(counts)]))


def prefixes(order: TokenOrder, codes: Sequence[str], lens: np.ndarray, floor: float) -> Prefixes:
    """Prefix elements of each text for pruning at `floor`; elements new to `order` are learned first."""
    owner, ids = elements(codes, lens)
    order.learn(ids)
    rank = order.rank(ids)
    if len(rank):
        key = (owner << 32) | (rank + _RANK_OFFSET) if len(codes) < (1 << 30) else None
        sort = np.argsort(key, kind="stable") if key is not None else np.lexsort((rank, owner))
        owner, rank = owner[sort], rank[sort]
    starts_all = np.concatenate([[0], np.cumsum(lens)])
    pos = np.arange(len(rank), dtype=np.int64) - starts_all[owner]
    keep = pos < prefix_lengths(floor, lens)[owner]
    owner, rank, pos = owner[keep], rank[keep], pos[keep]
    starts = np.searchsorted(owner, np.arange(len(codes) + 1, dtype=np.int64))
    return Prefixes(rank, pos, owner, starts)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(offsets - starts, counts)


def _partner_lengths(floor: float, m: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Range of partner lengths n for which an element at `pos` of a text of `m` tokens can
    count: n >= g m / (2 - g) (the length filter), and pos <= m - need + _K - 1 with
    need >= g (m + n) / 2, i.e. n <= (2 (m - pos + _K - 1) - g m) / g; g = floor less the slack.
    Rounded outwards, so the range only ever grows."""
    g = floor * (1 - _SLACK)
    lo = np.floor(g * m / (2 - g)) - 1
    hi = np.floor((2 * (m - pos + _K - 1) - g * m) / g) + 1
    return (np.clip(lo, 0, _LEN_MAX).astype(np.int64), np.clip(hi, -1, _LEN_MAX).astype(np.int64))


class _Chunk:
    """Indexed prefix elements, in two orders: by rank then the length `n` of their text, and by
    rank then (descending) the longest partner they can count for (`_partner_lengths` from the
    indexed side). A query element reads whichever of its two ranges is shorter. Per entry, in
    both halves: its text (`row`), `n`, and its slack n - pos + _K - 1 (a pair can count the
    element only if its `need` is at most the slack)."""

    def __init__(self, floor: float, rank: np.ndarray, row: np.ndarray, pos: np.ndarray, n: np.ndarray) -> None:
        self.floor, self._base = floor, (rank, row, pos, n)
        shifted = (rank + _RANK_OFFSET) << _LEN_BITS
        key_n = shifted | np.minimum(n, _LEN_MAX)
        key_m = shifted | (_LEN_MAX - np.maximum(_partner_lengths(floor, n, pos)[1], 0))
        by_n, by_m = np.argsort(key_n, kind="stable"), np.argsort(key_m, kind="stable")
        self.key_n, self.key_m = key_n[by_n], key_m[by_m]
        both = np.concatenate([by_n, by_m])
        self.row = row[both].astype(np.int32)
        self.n = n[both].astype(np.int32)
        self.slack = (n - pos + (_K - 1))[both].astype(np.int32)

    @classmethod
    def merge(cls, a: "_Chunk", b: "_Chunk") -> "_Chunk":
        return cls(a.floor, *(np.concatenate([x, y]) for x, y in zip(a._base, b._base)))

    def __len__(self) -> int:
        return len(self.key_n)


class PrefixIndex:
    """Prefixes of the pool's texts, in chunks merged like a binary counter (appends stay cheap)."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        """Pruning floor the indexed prefixes were cut for; valid for queries at this floor or above."""
        self._chunks: list[_Chunk] = []

    def add(self, pre: Prefixes, rows: np.ndarray, lens: np.ndarray) -> None:
        """Index texts whose prefixes are `pre` and lengths `lens` (owner i is pool position `rows[i]`)."""
        if not len(pre.rank):
            return
        self._chunks.append(_Chunk(self.floor, pre.rank, rows[pre.owner], pre.pos, lens[pre.owner]))
        while len(self._chunks) > 1 and len(self._chunks[-1]) * 2 >= len(self._chunks[-2]):
            b, a = self._chunks.pop(), self._chunks.pop()
            self._chunks.append(_Chunk.merge(a, b))

    def candidates(self, pre: Prefixes, q_lens: np.ndarray, pool_lens: np.ndarray,
                   floor: float) -> tuple[np.ndarray, np.ndarray]:
        """(query text, pool position) of every pair that passes the filters at `floor`, each once."""
        return _concat_pairs([join(pre, q_lens, c, pool_lens, floor) for c in self._chunks])


def self_join(pre: Prefixes, lens: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, k) with k < i of a run of texts that pass the filters at `floor`, each once."""
    return join(pre, lens, _Chunk(floor, pre.rank, pre.owner, pre.pos, lens[pre.owner]), lens, floor, below_only=True)


def join(pre: Prefixes, q_lens: np.ndarray, chunk: _Chunk, r_lens: np.ndarray, floor: float,
         below_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query text, indexed row) that pass the prefix, count and positional filters at
    `floor`, each once. With `below_only`, only pairs whose row is below the query."""
    width = int(r_lens.shape[0]) + 1
    if len(pre.starts) - 1 > (1 << 11) or width > (1 << 30):  # the pair sort key must fit 63 bits
        raise ValueError("join: at most 2,048 query texts and 2**30 indexed rows at once")
    m_el = q_lens[pre.owner]
    shifted = (pre.rank + _RANK_OFFSET) << _LEN_BITS
    n_lo, n_hi = _partner_lengths(floor, m_el, pre.pos)
    lo = np.searchsorted(chunk.key_n, shifted | n_lo, "left")
    cnt = np.maximum(np.searchsorted(chunk.key_n, shifted | np.maximum(n_hi, 0), "right") - lo, 0)
    cnt[n_hi < n_lo] = 0
    lo_m = np.searchsorted(chunk.key_m, shifted, "left")
    cnt_m = np.searchsorted(chunk.key_m, shifted | (_LEN_MAX - np.minimum(m_el, _LEN_MAX)), "right") - lo_m
    by_m = cnt_m < cnt
    lo, cnt = np.where(by_m, lo_m + len(chunk), lo), np.where(by_m, cnt_m, cnt)
    q_slack = m_el - pre.pos + (_K - 1)
    longest = int(max(q_lens.max(initial=0), r_lens.max(initial=0)))
    need_of = min_lcs(floor, 0, np.arange(2 * longest + 1))  # need by m + n
    qs, rs = [], []
    # Expand the hits in pieces of whole query texts of at most ~_HITS hits each.
    ccum = np.concatenate([[0], np.cumsum(cnt)])
    cum = ccum[pre.starts[1:]]  # hits up to the end of each query text
    t0 = 0
    n_texts = len(pre.starts) - 1
    while t0 < n_texts:
        t1 = max(int(np.searchsorted(cum, ccum[pre.starts[t0]] + _HITS, "right")), t0 + 1)
        t1 = min(t1, n_texts)
        a, b = pre.starts[t0], pre.starts[t1]
        t0 = t1
        c = cnt[a:b]
        idx = _ranges(lo[a:b], c)
        if not len(idx):
            continue
        q = np.repeat(pre.owner[a:b], c)
        need = need_of[np.repeat(m_el[a:b], c) + chunk.n[idx]]
        # A hit counts when the element lies within the first m - need + _K - 1 elements of
        # the query and n - need + _K - 1 of the row: then it is among the pair's first hits.
        slack = np.minimum(np.repeat(q_slack[a:b], c), chunk.slack[idx])
        ok = slack >= need
        r = chunk.row[idx]
        if below_only:
            ok &= r < q
        if not ok.any():
            continue
        # Group by pair with one sort: pair key above the hit's slack, so each group starts
        # with its smallest slack, which is its last hit's (elements further along both texts).
        key = np.sort(((q[ok] * width + r[ok]) << _SLACK_BITS) | np.minimum(slack[ok], _SLACK_MAX))
        edge = np.ones(len(key) + 1, dtype=bool)
        edge[1:-1] = (key[1:] >> _SLACK_BITS) != (key[:-1] >> _SLACK_BITS)
        bounds = np.nonzero(edge)[0]
        first = key[bounds[:-1]]
        shared = np.diff(bounds)
        pair = first >> _SLACK_BITS
        q, r = pair // width, pair % width
        last_slack = first & _SLACK_MAX
        need = need_of[q_lens[q] + r_lens[r]]
        # At least min(need, _K) shared elements among the counted hits, and every shared
        # element after the last hit within what is left of both texts (m - 1 - pos, n - 1 - pos).
        good = (shared >= np.minimum(need, _K)) & (
            (shared + last_slack - _K >= need) | (last_slack == _SLACK_MAX))
        qs.append(q[good])
        rs.append(r[good])
    return _concat_pairs(list(zip(qs, rs)))


def _concat_pairs(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
