"""`generate.prompt`: the general-purpose LLM step. A Jinja prompt per row, `n` samples, an optional parser.

Each (input row, sample) becomes one output row with the answer in `output_column`; answers
that fail the parser and calls that failed after retries become rejections, never crashes.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import jinja2
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dataforge.errors import UserError
from dataforge.jinja import compile_template, template_variables
from dataforge.llm.config import ANSWER_FIELDS, LLMConfig, LLMOverride, merge
from dataforge.llm.parsers import JsonParser, ParseError, RegexParser
from dataforge.llm.types import CallFailure, Message, Request
from dataforge.steps.base import ID, PARENT, PlanContext, RunContext, Step, StepError, StepResult, rejections_frame


class MessageTemplate(BaseModel):
    """One chat message whose content is a Jinja template over the row's columns."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    role: Literal["system", "user", "assistant"]
    """Who says it."""
    content: str
    """Jinja template, e.g. `Paraphrase: {{ instruction }}`."""


class GeneratePrompt(Step):
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
    llm: LLMOverride | None = None  # type: ignore[valid-type]
    """Overrides of the recipe's `llm:` for this step, field by field."""
    mode: Literal["online", "batch"] = "online"
    """`online` calls as rows go; `batch` submits through the provider's batch API (half price, hours)."""

    new_rows: ClassVar[bool] = True

    @field_validator("llm")
    @classmethod
    def _valid_override(cls, v: Any) -> Any:
        if v is not None:
            merge(LLMConfig(), v)  # range checks of LLMConfig apply to overrides too
        return v

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

    def uses_llm(self) -> bool:
        return True

    def expected_rows(self, rows_in: int, rejected: int) -> int | None:
        return rows_in * self.n - rejected  # each (row, sample) is an answer or a rejection

    def effective_llm(self, ctx: PlanContext) -> LLMConfig:
        """The recipe's `llm:` merged with this step's override."""
        try:
            return merge(ctx.llm, self.llm)
        except ValidationError as e:
            raise StepError(self.id, "llm", "; ".join(err["msg"].removeprefix("Value error, ")
                                                      for err in e.errors())) from None

    def params(self) -> dict[str, Any]:
        # The LLM settings enter through `fingerprint_extra`, merged and limited to those that change answers;
        # `mode` does not change them (a batch answer and an online one share the request hash).
        return {k: v for k, v in super().params().items() if k not in ("llm", "mode")}

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        cfg = self.effective_llm(ctx)
        return {"llm": {k: getattr(cfg, k) for k in ANSWER_FIELDS}}

    def check(self, ctx: PlanContext) -> None:
        self.required_columns()
        cfg = self.effective_llm(ctx)
        if self.mode == "batch" and cfg.provider == "local":
            raise StepError(self.id, "mode", "mode: batch needs llm.provider openai or anthropic (their batch APIs); "
                                             "the local model runs online only")
        if cfg.provider == "local":
            from dataforge.llm.providers.local import model_file

            try:
                model_file(cfg, ctx.resolve)
            except Exception as e:
                raise StepError(self.id, "llm", str(e)) from None
        else:
            from dataforge.llm.providers.base import read_key

            try:
                read_key(cfg)
            except UserError as e:
                raise StepError(self.id, "llm", e.message) from None

    # -- running ---------------------------------------------------------------
    def requests_for(self, df: pl.DataFrame, cfg: LLMConfig, ctx: RunContext) -> list[Request]:
        """One request per (row, sample), row-major."""
        from dataforge.llm.providers import make_provider

        templates = [(role, compile_template(src)) for role, src in self._templates()]
        extra = make_provider(cfg, ctx.resolve).request_extra() if cfg.provider == "local" else {}
        base = dict(provider=cfg.provider, model=cfg.model, temperature=cfg.temperature, top_p=cfg.top_p,
                    max_tokens=cfg.max_tokens, stop=tuple(cfg.stop) if cfg.stop else None,
                    seed=cfg.seed if cfg.seed is not None else ctx.seed, extra=extra)
        reqs: list[Request] = []
        for i, row in enumerate(df.iter_rows(named=True)):
            try:
                rendered = [(role, t.render(**row)) for role, t in templates]
            except jinja2.TemplateError as e:
                raise StepError(self.id, "prompt", f"row {i} (id {row.get(ID)}): template error: {e}") from None
            for k in range(self.n):
                if self.style == "completion":
                    reqs.append(Request(prompt=rendered[0][1], sample_index=k, **base))
                else:
                    msgs = tuple(Message(role=role, content=text) for role, text in rendered)  # type: ignore[arg-type]
                    reqs.append(Request(messages=msgs, sample_index=k, **base))
        return reqs

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        from dataforge.llm.engine import raise_if_stopped, run_requests

        df = inputs[0]
        cfg = self.effective_llm(ctx)
        requests = self.requests_for(df, cfg, ctx)
        if self.mode == "batch":
            from dataforge.llm.batch import run_batch

            results = run_batch(requests, cfg, ctx)
        else:
            results = run_requests(requests, cfg, ctx, desc=f"{self.id} ({cfg.provider}:{cfg.model})")
        raise_if_stopped(results)

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
                rej_reason.append("llm_error")
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
