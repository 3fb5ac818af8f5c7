"""`generate.prompt`: the general-purpose LLM step. A Jinja prompt per row, `n` samples, an optional parser.

Each (input row, sample) becomes one output row with the answer in `output_column`; answers
that fail the parser and calls that failed after retries become rejections, never crashes.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import jinja2
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataforge.jinja import compile_template, render_column, template_variables
from dataforge.llm.config import LLMConfig
from dataforge.llm.parsers import JsonParser, ParseError, RegexParser
from dataforge.llm.types import CallFailure, Request
from dataforge.steps.base import ID, LLM_ERROR, PARENT, PlanContext, RunContext, StepError, StepResult, rejections_frame
from dataforge.steps.generate.llm_step import LLMStep


class MessageTemplate(BaseModel):
    """One chat message whose content is a Jinja template over the row's columns."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    """Who says it."""
    content: str
    """Jinja template, e.g. `Paraphrase: {{ instruction }}`."""


class GeneratePrompt(LLMStep):
    """Ask an LLM once per row (or `n` times) with a templated prompt; the answer goes in a column."""

    type: Literal["generate.prompt"]
    prompt: str | None = None
    """Jinja template over the row's columns: the user message (chat) or the whole prompt (`style: completion`)."""
    system: str | None = None
    """Optional system message (Jinja template), chat style only."""
    messages: list[MessageTemplate] | None = None
    """A whole conversation of templated messages instead of `prompt`/`system`."""
    style: Literal["chat", "completion"] = "chat"
    """`chat` sends messages (instruct models); `completion` sends `prompt` as plain text (base models)."""
    n: int = Field(default=1, ge=1, le=1000)
    """Samples per row; each becomes its own output row (column `sample_index`)."""
    output_column: str = "response"
    """Column that receives the answer text."""
    parser: Annotated[RegexParser | JsonParser, Field(discriminator="type")] | None = None
    """Optional parser (`type: regex` or `type: json`); its fields become columns, failures become rejections."""
    strip: bool = True
    """Strip surrounding whitespace from answers."""
    keep_columns: bool = True
    """Copy the input row's columns to each output row."""

    row_wise: ClassVar[bool] = True  # one row's requests, answers and rejections depend on that row alone

    @model_validator(mode="after")
    def _one_prompt(self) -> "GeneratePrompt":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` and `messages`")
        if self.style == "completion" and (self.messages is not None or self.system is not None):
            raise ValueError("style: completion takes only `prompt` (no `messages` or `system`)")
        return self

    # -- declarations ----------------------------------------------------------
    def _templates(self) -> list[tuple[str, str]]:
        if self.messages is not None:
            return [(m.role, m.content) for m in self.messages]
        out = [("system", self.system)] if self.system else []
        return out + [("user", self.prompt or "")]

    def required_columns(self) -> list[str]:
        names: set[str] = set()
        for field_name, (_, src) in zip(self._field_names(), self._templates()):
            try:
                names |= template_variables(src)
            except jinja2.TemplateSyntaxError as e:
                raise StepError(self.id, field_name, f"template syntax error (line {e.lineno}): {e.message}") from None
        return sorted(names)

    def _field_names(self) -> list[str]:
        if self.messages is not None:
            return [f"messages[{i}].content" for i in range(len(self.messages))]
        return (["system"] if self.system else []) + ["prompt"]

    def parsed_columns(self) -> dict[str, pl.DataType]:
        return self.parser.columns(self.output_column) if self.parser else {}

    def added_columns(self) -> list[str]:
        cols = [self.output_column, "sample_index"]
        return cols + [c for c in self.parsed_columns() if c not in cols]

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        if not self.keep_columns:
            return self.added_columns()
        return super().output_columns(inputs)

    def expected_rows(self, rows_in: int, rejected: int) -> int | None:
        return rows_in * self.n - rejected  # each (row, sample) is an answer or a rejection

    def check(self, ctx: PlanContext) -> None:
        self.required_columns()
        super().check(ctx)

    # -- running ---------------------------------------------------------------
    def requests_for(self, df: pl.DataFrame, cfg: LLMConfig, ctx: RunContext) -> list[Request]:
        """One request per (row, sample), row-major."""
        base = self.request_base(cfg, ctx)
        reqs: list[Request] = []
        for rendered in self._render(df):
            for k in range(self.n):
                if self.style == "completion":
                    reqs.append(self.request(base, prompt=rendered[0][1], sample_index=k))
                else:
                    reqs.append(self.request(base, messages=rendered, sample_index=k))
        return reqs

    def _render(self, df: pl.DataFrame) -> list[list[tuple[str, str]]]:
        """Per row, its (role, text) messages. Each template renders over the whole column at once
        (`render_column`: a plain `{{ column }}` template is one polars expression); a template error is
        then found again row by row, to name the row."""
        try:
            columns = [(role, render_column(df, src).to_list()) for role, src in self._templates()]
        except jinja2.TemplateError:
            templates = [(role, compile_template(src)) for role, src in self._templates()]
            for i, row in enumerate(df.iter_rows(named=True)):
                try:
                    [t.render(**row) for _, t in templates]
                except jinja2.TemplateError as e:
                    raise StepError(self.id, "prompt", f"row {i} (id {row.get(ID)}): template error: {e}") from None
            raise
        return [[(role, texts[i]) for role, texts in columns] for i in range(df.height)]

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        df = inputs[0]
        cfg = self.effective_llm(ctx)
        results = self.call(self.requests_for(df, cfg, ctx), cfg, ctx)

        parsed_cols = self.parsed_columns()
        out: dict[str, list[Any]] = {c: [] for c in [self.output_column, "sample_index", *parsed_cols, PARENT]}
        take: list[int] = []
        rej_ids: list[str] = []
        rej_reason: list[str] = []
        rej_detail: list[str | None] = []
        ids = df[ID].to_list() if ID in df.columns else [str(i) for i in range(df.height)]
        for j, res in enumerate(results):
            i, k = divmod(j, self.n)
            if isinstance(res, CallFailure):
                rej_ids.append(ids[i])
                rej_reason.append(LLM_ERROR)
                rej_detail.append(f"sample {k}: {res.error}")
                continue
            text = res.text.strip() if self.strip else res.text
            values: dict[str, Any] = {self.output_column: text}
            if self.parser is not None:
                try:
                    values.update(self.parser.parse(text, self.output_column))
                except ParseError as e:
                    rej_ids.append(ids[i])
                    rej_reason.append("parse_error")
                    rej_detail.append(f"sample {k}: {e}; answer: {text[:300]}")
                    continue
            take.append(i)
            for c in parsed_cols:
                out[c].append(values.get(c))
            if self.output_column not in parsed_cols:
                out[self.output_column].append(values[self.output_column])
            out["sample_index"].append(k)
            out[PARENT].append(ids[i])
        schema = {self.output_column: pl.Utf8, "sample_index": pl.Int64, **parsed_cols, PARENT: pl.Utf8}
        new = pl.DataFrame(out, schema=schema)
        if self.keep_columns:
            base = df.drop([c for c in (ID, PARENT, *schema) if c in df.columns])[take] if take else \
                df.drop([c for c in (ID, PARENT, *schema) if c in df.columns]).clear()
            new = pl.concat([base, new], how="horizontal")
        rejections = rejections_frame(rej_ids, rej_reason, detail=rej_detail) if rej_ids else None
        return StepResult(df=new, rejections=rejections)
