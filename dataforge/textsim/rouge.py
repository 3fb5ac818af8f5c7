"""ROUGE-L F-measure equal, bit for bit, to `rouge_score.rouge_scorer.RougeScorer(["rougeL"])`.

rouge_score fills a Python dynamic-programming table per pair. Here the LCS length comes from
rapidfuzz's bit-parallel LCS over token sequences encoded as strings (see `tokens.py`), many
pairs at once on every core, and the F-measure uses rouge_score's arithmetic in the same order:
`p = lcs / len(prediction)`, `r = lcs / len(target)`, `f = 2 * p * r / (p + r)`, 0 when either
text has no token. That formula gives the same float whichever text is the target, so the
functions here take their arguments in any order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from dataforge.textsim.tokens import RougeTokens


def f_measure(lcs, len_a, len_b) -> np.ndarray:
    """rouge_score's LCS F-measure from LCS lengths and token counts (numpy broadcasting)."""
    lcs = np.asarray(lcs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = lcs / np.asarray(len_b, dtype=np.float64)
        recall = lcs / np.asarray(len_a, dtype=np.float64)
        f = 2.0 * precision * recall / (precision + recall)
    return np.where(lcs > 0, f, 0.0)


def lcs_matrix(codes_a: Sequence[str], codes_b: Sequence[str], workers: int = -1) -> np.ndarray:
    """LCS lengths of every pair of encoded texts, shape (len(codes_a), len(codes_b))."""
    if not codes_a or not codes_b:
        return np.zeros((len(codes_a), len(codes_b)), dtype=np.int32)
    return process.cdist(codes_a, codes_b, scorer=LCSseq.similarity, dtype=np.int32, workers=workers)


def code_lengths(codes: Sequence[str]) -> np.ndarray:
    """Token counts of encoded texts."""
    return np.fromiter(map(len, codes), dtype=np.int64, count=len(codes))


def rouge_l_matrix(texts_a: Sequence[str], texts_b: Sequence[str], *, use_stemmer: bool = False,
                   workers: int = -1) -> np.ndarray:
    """ROUGE-L F of every pair, shape (len(texts_a), len(texts_b)); `workers=-1` uses every core."""
    tok = RougeTokens(use_stemmer)
    a, b = tok.encode_all(texts_a), tok.encode_all(texts_b)
    return f_measure(lcs_matrix(a, b, workers), code_lengths(a)[:, None], code_lengths(b)[None, :])


def rouge_l_scores(text: str, texts: Sequence[str], *, use_stemmer: bool = False, workers: int = -1) -> np.ndarray:
    """ROUGE-L F of one text against each of `texts`."""
    return rouge_l_matrix([text], texts, use_stemmer=use_stemmer, workers=workers)[0]


def rouge_l_f(a: str, b: str, *, use_stemmer: bool = False) -> float:
    """ROUGE-L F-measure of two texts, equal to `RougeScorer(["rougeL"], use_stemmer).score(a, b)`."""
    tok = RougeTokens(use_stemmer)
    ca, cb = tok.encode(a), tok.encode(b)
    return float(f_measure(LCSseq.similarity(ca, cb), len(ca), len(cb)))
