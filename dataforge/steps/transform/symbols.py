"""`transform.symbols`: symbol tuning - in-context prompts whose labels are remapped to arbitrary symbols.

Per query row: k exemplars per class from the same task (never the query), labels remapped per
prompt to distinct symbols drawn from the training or held-out pool (`dataforge.textutil.symbols`),
no instruction. `relevant_labels` and `include_instruction` give the paper's four evaluation
settings. All draws are keyed by (recipe seed, task, query id): see `dataforge.textutil.randomness`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field, field_validator, model_validator

from dataforge.steps.base import ID, PARENT, PlanContext, RunContext, Step, StepError, StepResult
from dataforge.steps.transform.tasks import TASK, as_str_keys, check_task_keys, parse_k, stack_tasks
from dataforge.textutil.fewshot import (DEFAULT_FORMATS, DEFAULT_SEPARATORS, FewShotError, split_format,
                                        symbol_tuning_prompts)
from dataforge.textutil.symbols import symbol_pool

OUTPUT_COLUMNS = [TASK, "prompt", "target", "label", "symbol_map", "exemplar_ids"]


class SymbolsTransform(Step):
    """Build symbol-tuning prompts from classification rows: k exemplars per class plus one query."""

    type: Literal["transform.symbols"]
    input_column: str = "text"
    """Column holding the input text."""
    label_column: str = "label"
    """Column holding the class label (read as a string)."""
    task_column: str | None = None
    """Column naming each row's task; exemplars come from the same task. Default: each input step is a task."""
    label_names: dict[str, dict[Any, str]] = Field(default_factory=dict)
    """Natural label names per task (`"*"`: every task), e.g. `{sst2: {0: negative, 1: positive}}`."""
    k: int | str | list[int] = "2-10"
    """Exemplars per class: a fixed number (evaluation), a range `"2-10"` or `[2, 10]` drawn per prompt."""
    pool: Literal["train", "heldout"] = "train"
    """Symbol pool: `train` (indices 0-9,999, top 10k words) or `heldout` (10,000-99,999, rarer words)."""
    relevant_labels: bool = False
    """Keep the natural label names instead of symbols (an evaluation setting of the paper)."""
    include_instruction: bool = False
    """Put the task's instruction before the exemplars (an evaluation setting of the paper)."""
    instructions: dict[str, str] = Field(default_factory=dict)
    """Instruction per task (`"*"`: every task); used only with `include_instruction`."""
    formats: list[str] = Field(default_factory=lambda: list(DEFAULT_FORMATS), min_length=1)
    """Input-label formats with `{input}` and `{label}` slots; one is drawn per prompt."""
    separators: list[str] = Field(default_factory=lambda: list(DEFAULT_SEPARATORS), min_length=1)
    """Separators between exemplars (and before the query); one is drawn per prompt."""
    max_prompts_per_task: int | None = Field(default=None, ge=1)
    """Use at most this many rows per task as queries (a seeded random subset); default: every row."""
    prompts_per_query: int = Field(default=1, ge=1, le=100)
    """Prompts per query row, each with its own exemplars, symbols and format (more training data)."""
    passthrough: list[str] = Field(default_factory=list)
    """Columns of the query row copied to its prompt row (e.g. `flip_map` from `transform.flip`)."""

    kind_version: ClassVar[str] = "1"
    max_inputs: ClassVar[int] = 64
    new_rows: ClassVar[bool] = True

    @field_validator("k")
    @classmethod
    def _k(cls, v: Any) -> Any:
        parse_k(v)
        return v

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        for f in v:
            split_format(f)
        return v

    @model_validator(mode="after")
    def _instruction(self) -> "SymbolsTransform":
        if self.include_instruction and not self.instructions:
            raise ValueError("include_instruction needs `instructions` (per task, or '*' for all)")
        return self

    def required_columns(self) -> list[str]:
        return [self.input_column, self.label_column, *([self.task_column] if self.task_column else []),
                *self.passthrough]

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        return [*OUTPUT_COLUMNS, *[c for c in self.passthrough if c not in OUTPUT_COLUMNS]]

    def _check_task_keys(self, tasks: list[str]) -> None:
        if self.task_column is None and tasks:
            check_task_keys(self.id, {"label_names": self.label_names,
                                      **({"instructions": self.instructions} if self.include_instruction else {})},
                            tasks)

    def check(self, ctx: PlanContext) -> None:
        self._check_task_keys(self.inputs())  # `from` left out: checked when the step runs
        if self.pool == "heldout" or not self.relevant_labels:
            try:
                import wordfreq  # noqa: F401
            except ImportError:
                raise StepError(self.id, "pool", "symbol pools need wordfreq: pip install wordfreq") from None

    def expected_rows(self, rows_in: int, rejected: int) -> int | None:
        return (rows_in - rejected) * self.prompts_per_query  # each kept row is a query, that many times

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        self._check_task_keys(ctx.input_ids)
        df, task_column = stack_tasks(inputs, ctx.input_ids, self.task_column, always=True)
        try:
            prompts = symbol_tuning_prompts(
                df, ctx.seed, input_column=self.input_column, label_column=self.label_column,
                task_column=task_column, label_names={t: as_str_keys(m) for t, m in self.label_names.items()},
                k=parse_k(self.k), pool=None if self.relevant_labels else symbol_pool(self.pool),
                instructions=self.instructions if self.include_instruction else None, formats=list(self.formats),
                separators=list(self.separators), max_prompts_per_task=self.max_prompts_per_task,
                prompts_per_query=self.prompts_per_query,
                passthrough=list(self.passthrough))
        except FewShotError as e:
            raise StepError(self.id, "k" if "k=" in str(e) else None, str(e)) from None
        return StepResult(df=prompts, rejections=self._unused_rows(df, task_column, prompts))

    def _unused_rows(self, df: pl.DataFrame, task_column: str, prompts: pl.DataFrame) -> pl.DataFrame | None:
        """Input rows that became no query: no label, a copy of an earlier row, or not drawn for the cap."""
        rows = df.select(pl.col(ID).cast(pl.Utf8), pl.col(task_column).cast(pl.Utf8).alias("_task"),
                         pl.col(self.label_column).is_null().alias("_no_label"))
        queried = prompts.select(pl.col(PARENT).alias(ID), pl.col(TASK).alias("_task")).unique()
        rows = rows.with_columns(
            pl.when(pl.col("_no_label")).then(pl.lit("null_label"))
            .when(pl.struct(ID, "_task").is_first_distinct().not_()).then(pl.lit("duplicate"))
            .otherwise(pl.lit("max_prompts_per_task")).alias("reason"))
        # A row with a reason of its own is dropped; any other row was a query candidate, dropped only when
        # no prompt came from it (not drawn under `max_prompts_per_task`).
        dropped = rows.filter(pl.col("reason") != "max_prompts_per_task").vstack(
            rows.filter(pl.col("reason") == "max_prompts_per_task").join(queried, on=[ID, "_task"], how="anti",
                                                                          maintain_order="left"))
        if dropped.height == 0:
            return None
        detail = pl.when(pl.col("reason") == "duplicate").then(pl.lit("same content as an earlier row of task ")
                                                               + pl.col("_task")) \
            .when(pl.col("reason") == "null_label").then(pl.lit(f"no {self.label_column}")) \
            .otherwise(pl.lit(f"not drawn as a query (max_prompts_per_task={self.max_prompts_per_task})"))
        return dropped.select(pl.col(ID).alias("row_id"), "reason", pl.lit(None, dtype=pl.Float64).alias("score"),
                              detail.alias("detail"))
