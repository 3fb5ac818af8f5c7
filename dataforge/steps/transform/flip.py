"""`transform.flip`: flip the labels of classification rows (binary: swap; multi-class: a derangement).

Apply it to raw rows before `transform.symbols` (or `transform.template`): exemplars and query are
then flipped alike, because every row of a task is mapped the same way. The map is recorded in
`flip_map` (JSON) and the old label in `original_label`; on a binary task flipping twice restores
the labels.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl

from dataforge.steps.base import RunContext, Step, StepError
from dataforge.steps.transform.tasks import TASK, stack_tasks
from dataforge.textutil.labels import flip_labels


class FlipTransform(Step):
    """Flip labels per task, recording the map (`flip_map`) and the old label (`original_label`)."""

    type: Literal["transform.flip"]
    label_column: str = "label"
    """Column whose labels are flipped (in place)."""
    task_column: str | None = None
    """Column naming each row's task; each task gets its own map. Default: each input step is a task."""

    kind_version: ClassVar[str] = "1"
    max_inputs: ClassVar[int] = 64
    new_rows: ClassVar[bool] = True

    def required_columns(self) -> list[str]:
        return [self.label_column, *([self.task_column] if self.task_column else [])]

    def added_columns(self) -> list[str]:
        several = self.task_column is None and len(self.inputs()) > 1
        return ["original_label", "flip_map", *([TASK] if several else [])]

    def expected_rows(self, rows_in: int, rejected: int) -> int | None:
        return rows_in - rejected  # every row, its label flipped

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        names = ctx.input_ids
        df, task_column = stack_tasks(inputs, names, self.task_column)
        if df.height == 0:
            return df.with_columns(pl.lit(None, dtype=pl.Utf8).alias("original_label"),
                                   pl.lit(None, dtype=pl.Utf8).alias("flip_map"))
        try:
            return flip_labels(df, self.label_column, ctx.seed, task_column, task=names[0])
        except ValueError as e:
            raise StepError(self.id, "label_column", str(e)) from None
