"""Exact, fast text similarity: ROUGE-L equal to rouge_score's, with bit-parallel LCS on every core.

Public API (independent of recipes and steps):

- `rouge_l_f(a, b, use_stemmer=False) -> float`
- `rouge_l_scores(text, texts, ...) -> np.ndarray`, `rouge_l_matrix(texts_a, texts_b, ...) -> np.ndarray`
- `greedy_filter(texts, threshold=0.7, reference=(), ...) -> FilterResult(keep, max_score, nearest)`
- `reference_filter(texts, reference, threshold=0.7, ...) -> FilterResult`
- `RougePool`: an incremental pool (`add`, `best`, `filter_greedy`) for generators that filter
  batch by batch, e.g. Self-Instruct.
"""

from dataforge.textsim.pool import FilterResult, RougePool, greedy_filter, reference_filter
from dataforge.textsim.rouge import rouge_l_f, rouge_l_matrix, rouge_l_scores
from dataforge.textsim.tokens import RougeTokens

__all__ = ["FilterResult", "RougePool", "RougeTokens", "greedy_filter", "reference_filter", "rouge_l_f",
           "rouge_l_matrix", "rouge_l_scores"]
