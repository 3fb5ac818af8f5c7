"""Exact, fast text similarity: ROUGE-L equal to rouge_score's, with bit-parallel LCS on every core.

Public API (independent of recipes and steps; `use_stemmer` is rouge_score's option, `workers`
the number of scoring threads, -1 = every core; scores equal rouge_score's with `==`):

- `rouge_l_f(a, b, *, use_stemmer=False) -> float`
- `rouge_l_scores(text, texts, *, use_stemmer=False, workers=-1) -> np.ndarray` (float64)
- `rouge_l_matrix(texts_a, texts_b, *, use_stemmer=False, workers=-1) -> np.ndarray` (float64)
- `greedy_filter(texts, threshold=0.7, reference=(), *, use_stemmer=False, workers=-1, progress=None,
  score_floor=0.0) -> FilterResult(keep, max_score, nearest)`: Self-Instruct's loop; a text is dropped
  when its best F against `reference` + the texts kept before it is at least `threshold`; `nearest`
  indexes `[*reference, *texts]`, -1 when `max_score` is 0; ties go to the first in that order.
- `reference_filter(texts, reference, threshold=0.7, *, use_stemmer=False, workers=-1, score_floor=0.0)
  -> FilterResult`: texts compared with `reference` only; `nearest` indexes `reference`.
- `RougePool(texts=(), *, use_stemmer=False, workers=-1)`: an incremental pool for generators
  that filter batch by batch: `add(texts)`, `best(texts, *, score_floor=0.0) -> (max_score, nearest)`,
  `filter_greedy(texts, threshold=0.7, progress=None, *, score_floor=0.0) -> FilterResult` (kept
  texts join the pool); `nearest` is a serial number counting every text ever given to the pool;
  `filter_greedy_scored(texts, threshold=0.7) -> (FilterResult, rows)` also returns each kept text's
  exact F against every pool text it met (every pair scored: for a generator's batches).
- `score_floor` (0 to the threshold): scores are exact from the floor up and NaN (nearest -1)
  below it; only pairs that could reach it are scored (`prefix.py`), so `score_floor=threshold`
  is the fast setting. Decisions never depend on it.
- `RougeTokens(use_stemmer=False)`: rouge_score's tokenizer (`tokenize`) plus a token -> character
  encoding (`encode`, `encode_all`).
"""

from dataforge.textsim.pool import FilterResult, RougePool, greedy_filter, reference_filter
from dataforge.textsim.rouge import rouge_l_f, rouge_l_matrix, rouge_l_scores
from dataforge.textsim.tokens import RougeTokens

__all__ = ["FilterResult", "RougePool", "RougeTokens", "greedy_filter", "reference_filter", "rouge_l_f",
           "rouge_l_matrix", "rouge_l_scores"]
