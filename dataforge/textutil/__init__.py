"""Pure, vectorised text helpers shared by the transform steps and export-time templating.

- `randomness`: counter-based random numbers keyed by (seed, row id), independent of row order.
- `symbols`: the symbol-tuning label pools (training / held-out) and per-prompt symbol sampling.
- `fewshot`: exemplar sampling per class and prompt assembly with polars.
- `labels`: label flips (swap / derangement).
- `templating`: Flan-style templating (`apply_templates`), option blocks, chain-of-thought targets, pruning.
- `encoder`: the sentence encoder (a sentence-transformers directory, mean pooling) that
  `filter.semantic` and the rationale ranker load.
- `verbnoun`: root verb + direct-object noun of an instruction (spaCy dependency rules, or a benepar
  constituency tree walk), for `filter.verb_noun` and the report.
"""
