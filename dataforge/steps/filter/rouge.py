"""`filter.rouge_l`: drop near-duplicates by ROUGE-L F, exactly as rouge_score scores them.

`mode: greedy` is Self-Instruct's filter: rows are looked at in order and a row is dropped when
its best F against the reference rows (if any) and every row kept before it reaches
`threshold` (ROUGE-L >= threshold is a near duplicate). `mode: reference` drops rows too close to a reference dataset (an eval set, say)
and does not compare rows with each other. The reference is a second input: `reference:
STEP_ID` (or `from: [main, reference]`).

Only pairs that can reach `score_floor` (default: the threshold) are scored, so a kept row's
best F is exact only when it reaches the floor; below it the row records null. A dropped row's
score and nearest row are always exact, and the decisions never depend on the floor.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import Field, field_validator

from dataforge.steps.base import (ID, PlanContext, RunContext, Step, StepError, StepResult, check_text_columns,
                                  rejections_frame)


class RougeLFilter(Step):
    """Drop rows whose ROUGE-L F against kept or reference rows reaches a threshold."""

    type: Literal["filter.rouge_l"]
    column: str = "instruction"
    """Text column compared."""
    threshold: float = Field(default=0.7, ge=0, le=1)
    """Drop a row when its best ROUGE-L F is at least this (Self-Instruct: 0.7); a row is kept only
    when its best F is below it."""
    mode: Literal["greedy", "reference"] = "greedy"
    """`greedy`: compare each row with the reference rows and the rows kept before it (Self-Instruct);
    `reference`: compare each row with the reference rows only (e.g. drop eval-set leaks)."""
    reference: str | None = None
    """Id of the step whose rows are the reference set (read as a second input). Also allowed:
    `from: [main, reference]`, where the second input is the reference."""
    reference_column: str | None = None
    """Text column of the reference rows; default: `column`."""
    score_floor: float | None = Field(default=None, ge=0, le=1)
    """Kept rows record their exact best F (`rouge_l_max`, `rouge_l_nearest_id`) when it is at least
    this, and null below it. Default: the threshold (kept rows record null; only pairs that could
    reach the threshold are compared, which is what makes millions of rows fast). 0 records every
    kept row's best F and compares every pair (slow past ~100k rows). Must not exceed `threshold`;
    decisions and rejections are the same whatever it is."""
    use_stemmer: bool = False
    """Porter-stem tokens longer than 3 characters, as rouge_score's `use_stemmer=True`."""
    workers: int = -1
    """Threads used for scoring; -1 uses every core. Does not change the output."""

    max_inputs = 2
    kind_version = "2"  # 2: kept rows below score_floor record null

    @field_validator("workers")
    @classmethod
    def _workers(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError("must be -1 (every core) or a positive number of threads")
        return v

    def inputs(self) -> list[str]:
        ins = super().inputs()
        if self.reference is None:
            return ins
        return [i for i in ins if i != self.reference] + [self.reference]

    def accounted_inputs(self, heights: list[int]) -> int:
        return heights[0]  # the reference input is compared against, never kept or dropped

    def _has_reference(self) -> bool:
        return self.reference is not None or (isinstance(self.from_, list) and len(self.from_) == 2)

    def required_columns(self) -> list[str]:
        return [self.column]

    def added_columns(self) -> list[str]:
        return ["rouge_l_max", "rouge_l_nearest_id"]

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        ref_col = self.reference_column or self.column
        if len(inputs) == 2 and inputs[1] is not None and ref_col not in inputs[1]:
            raise StepError(self.id, "reference_column",
                            f"reference input {self.inputs()[1]!r} has no column {ref_col!r}; "
                            f"it has: {', '.join(inputs[1]) or '(none)'}")
        return super().output_columns(inputs)

    def check(self, ctx: PlanContext) -> None:
        if self.reference is not None and self.from_ is None:
            raise StepError(self.id, "from", "name the main input in `from` when `reference` is set")
        if self.mode == "reference" and not self._has_reference():
            raise StepError(self.id, "mode", "mode `reference` needs a reference input: set `reference: STEP_ID` "
                                             "or `from: [main, reference]`")
        if self.score_floor is not None and self.score_floor > self.threshold:
            raise StepError(self.id, "score_floor", f"must not exceed threshold ({self.threshold}); "
                                                    f"got {self.score_floor}")
        if self.reference_column is not None and not self._has_reference():
            raise StepError(self.id, "reference_column", "set only with a reference input (`reference: STEP_ID`)")

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in super().params().items() if k != "workers"}

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        df = inputs[0]
        from dataforge.textsim import greedy_filter, reference_filter  # rouge_score/numpy work: only when run

        check_text_columns(self.id, df, {self.column: "column"})
        texts = _texts(df, self.column)
        ref_texts: list[str] = []
        ref_ids: list[str] = []
        if len(inputs) == 2:
            ref = inputs[1]
            check_text_columns(self.id, ref, {self.reference_column or self.column:
                                              "reference_column" if self.reference_column else "column"})
            ref_texts = _texts(ref, self.reference_column or self.column)
            ref_ids = ref[ID].cast(pl.Utf8).to_list()
        ids = df[ID].cast(pl.Utf8).to_list()
        task = ctx.progress.task(f"{self.id}: rouge_l", total=len(texts)) if ctx.progress else None
        floor = self.threshold if self.score_floor is None else self.score_floor
        if self.mode == "greedy":
            res = greedy_filter(texts, self.threshold, ref_texts, use_stemmer=self.use_stemmer,
                                workers=self.workers, progress=task.advance if task else None,
                                score_floor=floor)
            pool_ids = ref_ids + ids
        else:
            res = reference_filter(texts, ref_texts, self.threshold, use_stemmer=self.use_stemmer,
                                   workers=self.workers, score_floor=floor)
            pool_ids = ref_ids
            if task:
                task.advance(len(texts))
        if task:
            task.close()
        nearest = [pool_ids[j] if j >= 0 else None for j in res.nearest.tolist()]
        scored = df.with_columns(pl.Series("rouge_l_max", res.max_score, dtype=pl.Float64).fill_nan(None),
                                 pl.Series("rouge_l_nearest_id", nearest, dtype=pl.Utf8))
        keep = pl.Series(res.keep)
        dropped = scored.filter(~keep)
        rejections = rejections_frame(dropped[ID].to_list(), "rouge_l", dropped["rouge_l_max"].to_list(),
                                      dropped["rouge_l_nearest_id"].to_list())
        return StepResult(scored.filter(keep), rejections=rejections,
                          notes={"kept": int(res.keep.sum()), "dropped": dropped.height})


def _texts(df: pl.DataFrame, column: str) -> list[str]:
    return df[column].cast(pl.Utf8).fill_null("").to_list()
