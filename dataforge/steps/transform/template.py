"""`transform.template`: Flan-style templating - several templates per task, one picked per row by seed.

Zero-shot and few-shot prompts, answer options blocks, chain-of-thought targets and triggers, and
input inversion; see `dataforge.textutil.templating.apply_templates` (also used at export time).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import jinja2
import polars as pl
from pydantic import Field, field_validator

from dataforge.steps.base import PlanContext, RunContext, Step, StepError
from dataforge.steps.transform.tasks import TASK, as_str_keys, check_task_keys, names_for, stack_tasks
from dataforge.textutil.templating import FlanTemplate, TemplateSettings, apply_templates, check_templates, \
    required_variables

ADDED = ["prompt", "target", "template_id", "exemplar_ids"]


class TemplateTransform(Step, TemplateSettings):
    """Turn rows into (prompt, target) pairs with Jinja templates chosen per row; records `template_id`."""

    type: Literal["transform.template"]
    templates: dict[str, list[FlanTemplate]] = Field(min_length=1)
    """Templates per task (`"*"`: tasks without their own list), e.g. `{sst2: [{id: s1, prompt: ...}]}`."""
    task_column: str | None = None
    """Column naming each row's task. Default: each input step is a task (column `task` is added)."""
    label_names: dict[str, dict[Any, str]] = Field(default_factory=dict)
    """Rename answers per task (`"*"`: every task) before templating, e.g. `{sst2: {0: negative, 1: positive}}`."""

    kind_version: ClassVar[str] = "2"  # 2: CoT rows whose exemplars were all pruned get the zero-shot trigger
    max_inputs: ClassVar[int] = 64
    new_rows: ClassVar[bool] = True

    @field_validator("templates")
    @classmethod
    def _compile(cls, v: dict[str, list[FlanTemplate]]) -> dict[str, list[FlanTemplate]]:
        for task, ts in v.items():
            if not ts:
                raise ValueError(f"task {task!r} has an empty template list")
            check_templates(ts, where=f"task {task!r}: ")
        return v

    def _settings(self, ctx: PlanContext | None = None) -> TemplateSettings:
        values = {k: getattr(self, k) for k in TemplateSettings.model_fields}
        if ctx is not None and self.tokenizer:
            values["tokenizer"] = str(ctx.resolve(self.tokenizer))
        return TemplateSettings(**values)

    def _check_task_keys(self, tasks: list[str]) -> None:
        if self.task_column is None and tasks:
            check_task_keys(self.id, {"label_names": self.label_names, "templates": self.templates}, tasks)

    def check(self, ctx: PlanContext) -> None:
        self._check_task_keys(self.inputs())  # `from` left out: checked when the step runs
        if self.length_unit == "tokens" and self.tokenizer:
            try:
                import tokenizers  # noqa: F401
            except ImportError:
                raise StepError(self.id, "tokenizer", "token budgets need tokenizers: pip install tokenizers") from None
            if not ctx.resolve(self.tokenizer).exists():
                raise StepError(self.id, "tokenizer", f"not found: {ctx.resolve(self.tokenizer)}")

    def required_columns(self) -> list[str]:
        names: set[str] = set()
        for ts in self.templates.values():
            names |= required_variables(ts, self._settings())
        if self.options_column:
            names.add(self.options_column)
        if self.task_column:
            names.add(self.task_column)
        return sorted(names)

    def added_columns(self) -> list[str]:
        several = self.task_column is None and len(self.inputs()) > 1
        return [*([TASK] if several else []), *ADDED]

    def expected_rows(self, rows_in: int, rejected: int) -> int | None:
        return rows_in - rejected  # one example per input row

    def is_row_wise(self) -> bool:
        # Exemplars come from other rows, `options` lists the task's distinct answers, and with a task
        # column the output is grouped by task: each of these looks across rows.
        return (self.shots == 0 and (self.options_column is not None or not self.options)
                and self.task_column is None and len(self.inputs()) <= 1)

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        names = ctx.input_ids
        self._check_task_keys(names)
        df, task_column = stack_tasks(inputs, names, self.task_column)
        settings = self._settings(ctx)
        groups = (df[task_column].cast(pl.Utf8).unique(maintain_order=True).to_list() if task_column
                  else [names[0]])
        out = []
        for task in groups:
            part = df if task_column is None else df.filter(pl.col(task_column).cast(pl.Utf8) == task)
            templates = self.templates.get(task, self.templates.get("*"))
            if templates is None:
                raise StepError(self.id, "templates", f"no templates for task {task!r} (nor '*'); "
                                                      f"tasks with templates: {', '.join(self.templates)}")
            names_map = names_for({t: as_str_keys(m) for t, m in self.label_names.items()}, task)
            if names_map:
                col = pl.col(self.answer_column).cast(pl.Utf8)
                part = part.with_columns(col.replace(names_map).alias(self.answer_column))
            try:
                out.append(apply_templates(part, templates, settings, ctx.seed, task))
            except jinja2.TemplateError as e:
                raise StepError(self.id, "templates", f"task {task!r}: {e}") from None
        if not out:
            return df.with_columns(*[pl.lit(None, dtype=pl.Utf8).alias(c) for c in ADDED[:-1]],
                                   pl.lit(None, dtype=pl.List(pl.Utf8)).alias("exemplar_ids"))
        return pl.concat(out, how="vertical")

