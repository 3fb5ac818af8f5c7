"""`transform.grade`: label responses positive/negative by comparing their final answer with a gold answer.

Adds the extracted answer (`answer_column`), `gold_answer`, `correct` (bool), `label` (`positive` /
`negative`; null when the gold has no answer) and `grade_reason` (`match`, `mismatch`, `no_answer`,
`no_gold`). Extraction and equivalence: `dataforge.textutil.answers` / `equivalence`; docs/grading.md.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl
from pydantic import model_validator

from dataforge.steps.base import RunContext, Step
from dataforge.textutil.grading import GRADE_COLUMNS, GradeSettings, grade_all


class GradeTransform(Step, GradeSettings):
    """Grade a response column against a gold column; every row is kept, labelled."""

    type: Literal["transform.grade"]
    response_column: str = "response"
    """Column holding the responses (rationales) to grade."""
    gold_column: str = "gold"
    """Column holding the gold answer (or a gold rationale with `gold_is_rationale: true`)."""
    answer_column: str = "answer"
    """Column that receives each response's extracted final answer."""

    kind_version: ClassVar[str] = "5"  # 2: answer_is reads "12, since ..." as 12; 3: "x = 5, since ..." as x = 5;
    # 4: "2, as well as -2" stays whole; 5: a title with "Because" is not cut

    @model_validator(mode="after")
    def _distinct_columns(self) -> "GradeTransform":
        if self.answer_column in (self.response_column, self.gold_column, *GRADE_COLUMNS):
            raise ValueError(f"answer_column {self.answer_column!r} would overwrite the response, the gold or a "
                             "grading column; set `answer_column:` to another name")
        return self

    def required_columns(self) -> list[str]:
        return [self.response_column, self.gold_column]

    def added_columns(self) -> list[str]:
        return [self.answer_column, *GRADE_COLUMNS]

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        df = inputs[0]
        grades = grade_all(df[self.response_column].cast(pl.Utf8).to_list(), df[self.gold_column].to_list(),
                           self.grading())
        return df.with_columns(
            pl.Series(self.answer_column, [g.answer for g in grades], dtype=pl.Utf8),
            pl.Series("gold_answer", [g.gold_answer for g in grades], dtype=pl.Utf8),
            pl.Series("correct", [g.correct for g in grades], dtype=pl.Boolean),
            pl.Series("label", [g.label for g in grades], dtype=pl.Utf8),
            pl.Series("grade_reason", [g.reason for g in grades], dtype=pl.Utf8),
        )
