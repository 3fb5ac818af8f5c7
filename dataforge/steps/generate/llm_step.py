"""The base of every step kind that calls an LLM: the `llm:` override, its checks, the fingerprint over
the settings that change answers, request building, and the online/batch switch.

A kind subclasses `LLMStep`, builds requests with `self.request(...)` and answers them with
`self.call(...)` (one round) or `with self.session(...) as s:` (round after round, one provider,
call log and progress bar). Kinds that send several kinds of calls with their own sampling settings
(Self-Instruct's bootstrap, identification and instance prompts) declare those as `Sampling`
blocks built by `sampling_model`; for them the `llm:` block picks the model, not the sampling.
Those kinds derive from `TemplatedLLMStep`: shipped prompt templates the recipe may override
(`prompts:`), checked before any call, and a `style` (completion or chat).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal

import jinja2

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic.fields import FieldInfo

from dataforge.errors import UserError
from dataforge.jinja import compile_template
from dataforge.llm.config import ANSWER_FIELDS, SAMPLING_FIELDS, LLMConfig, LLMOverride, merge, unsupported_sampling
from dataforge.llm.types import Message, Request
from dataforge.prompts import load
from dataforge.steps.base import PlanContext, RunContext, Step, StepError

if TYPE_CHECKING:
    from dataforge.llm.engine import Result, Session


class Sampling(BaseModel):
    """Request settings of one kind of call a step makes (each kind's defaults are its method's values)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.7, ge=0, le=2)
    """Sampling temperature."""
    top_p: float = Field(default=1.0, ge=0, le=1)
    """Nucleus sampling mass (0 behaves as greedy on OpenAI-style servers)."""
    max_tokens: int = Field(default=256, ge=1)
    """Most tokens to generate."""
    stop: list[str] | None = None
    """Stop sequences."""
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    """Penalty on tokens already present (null: not sent; Anthropic has none)."""
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    """Penalty growing with a token's count so far (null: not sent; Anthropic has none)."""


def sampling_model(name: str, doc: str, **defaults: Any) -> type[Sampling]:
    """A `Sampling` subclass whose field defaults are `defaults` (so a recipe overrides field by field)."""
    fields: dict[str, Any] = {}
    for k, v in defaults.items():
        base = Sampling.model_fields[k]
        fields[k] = (base.annotation, FieldInfo.merge_field_infos(base, default=v))
    model = create_model(name, __base__=Sampling, **fields)
    model.__doc__ = doc
    return model


class LLMStep(Step):
    """Shared plumbing of LLM step kinds (see the module docstring)."""

    llm: LLMOverride | None = None  # type: ignore[valid-type]
    """Overrides of the recipe's `llm:` for this step, field by field."""
    mode: Literal["online", "batch"] = "online"
    """`online` calls as rows go; `batch` submits through the provider's batch API (half price, hours)."""

    new_rows: ClassVar[bool] = True
    batch_ok: ClassVar[bool] = True
    """False for kinds whose later calls depend on earlier answers (rounds cannot wait hours each)."""
    own_sampling: ClassVar[bool] = False
    """True for kinds whose `Sampling` blocks set every request's sampling (the `llm:` block's are unused)."""

    @field_validator("llm")
    @classmethod
    def _valid_override(cls, v: Any) -> Any:
        if v is not None:
            merge(LLMConfig(), v)  # range checks of LLMConfig apply to overrides too
        return v

    def uses_llm(self) -> bool:
        return True

    def sampling_blocks(self) -> dict[str, Sampling]:
        """Field name -> this step's `Sampling` blocks (none for kinds that use `llm:`'s sampling)."""
        return {name: v for name in type(self).model_fields if isinstance(v := getattr(self, name), Sampling)}

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
        fields = [k for k in ANSWER_FIELDS if not (self.own_sampling and k in SAMPLING_FIELDS)]
        return {"llm": {k: getattr(cfg, k) for k in fields}}

    def check(self, ctx: PlanContext) -> None:
        """Provider, key and model file present; batch mode possible; sampling the provider can take."""
        cfg = self.effective_llm(ctx)
        if self.mode == "batch" and not self.batch_ok:
            raise StepError(self.id, "mode", f"{self.type} runs online only: each round's prompts depend on "
                                             "the answers of the round before")
        if self.mode == "batch" and cfg.provider == "local":
            raise StepError(self.id, "mode", "mode: batch needs llm.provider openai or anthropic (their batch APIs); "
                                             "the local model runs online only")
        if self.own_sampling and self.llm is not None:
            set_here = [k for k in SAMPLING_FIELDS if getattr(self.llm, k, None) is not None]
            if set_here:
                names = ", ".join(self.sampling_blocks())
                raise StepError(self.id, "llm", f"{', '.join(set_here)}: {self.type} takes its sampling settings "
                                                f"from {names}, not from llm:")
        for name, block in self.sampling_blocks().items():
            why = unsupported_sampling(cfg.provider, block.model_dump())
            if why:
                raise StepError(self.id, name, why)
        if cfg.provider == "local":
            from dataforge.llm.providers.local import model_file

            try:
                model_file(cfg, ctx.resolve)
            except Exception as e:
                raise StepError(self.id, "llm", str(e), recipe_key=self._llm_block(ctx, "model_path")) from None
        else:
            from dataforge.llm.providers.base import read_key

            try:
                read_key(cfg)
            except UserError as e:
                raise StepError(self.id, "llm", e.message,
                                recipe_key=self._llm_block(ctx, "provider", "api_key_env")) from None

    def _llm_block(self, ctx: PlanContext, *keys: str) -> tuple[str] | None:
        """`("llm",)`, the recipe's block, when that is where `keys` were set (the step's own `llm:`
        sets none of them); None for the step's `llm` (an error then points at the step)."""
        if ctx.llm is None or (self.llm is not None and any(getattr(self.llm, k, None) is not None for k in keys)):
            return None
        return ("llm",)

    # -- running ---------------------------------------------------------------
    def request_base(self, cfg: LLMConfig, ctx: RunContext, sampling: Sampling | None = None) -> dict[str, Any]:
        """Keyword arguments shared by this step's `Request`s: provider, model, seed, sampling.

        Sampling comes from `sampling` when given, else from `cfg` (the merged `llm:` block).
        """
        from dataforge.llm.providers import make_provider

        src: Any = sampling if sampling is not None else cfg
        extra = make_provider(cfg, ctx.resolve).request_extra() if cfg.provider == "local" else {}
        return dict(provider=cfg.provider, model=cfg.model, temperature=src.temperature, top_p=src.top_p,
                    max_tokens=src.max_tokens, stop=tuple(src.stop) if src.stop else None,
                    presence_penalty=src.presence_penalty, frequency_penalty=src.frequency_penalty,
                    seed=cfg.seed if cfg.seed is not None else ctx.seed, extra=extra)

    @staticmethod
    def request(base: dict[str, Any], *, prompt: str | None = None,
                messages: list[tuple[str, str]] | None = None, sample_index: int = 0) -> Request:
        """One request: a completion `prompt`, or chat `messages` as (role, content) pairs."""
        if messages is not None:
            msgs = tuple(Message(role=role, content=text) for role, text in messages)  # type: ignore[arg-type]
            return Request(messages=msgs, sample_index=sample_index, **base)
        return Request(prompt=prompt, sample_index=sample_index, **base)

    def call(self, requests: list[Request], cfg: LLMConfig, ctx: RunContext) -> list["Result"]:
        """Answer one list of requests, online or in batch per `mode`; a budget stop raises."""
        from dataforge.llm.engine import raise_if_stopped

        if self.mode == "batch":
            from dataforge.llm.batch import run_batch

            results = run_batch(requests, cfg, ctx)
        else:
            with self.session(cfg, ctx) as s:
                results = s.run(requests)
        raise_if_stopped(results)
        return results

    @contextmanager
    def session(self, cfg: LLMConfig, ctx: RunContext) -> Iterator["Session"]:
        """An engine session for this step (online); see `dataforge.llm.engine.session`."""
        from dataforge.llm.engine import session

        with session(cfg, ctx, desc=f"{self.id} ({cfg.provider}:{cfg.model})") as s:
            yield s


def stable_id(*parts: str) -> str:
    """A stable 16-hex id for something that never became an input row (a candidate, a generated task)."""
    return hashlib.md5("\x1f".join(parts).encode()).hexdigest()[:16]


class PromptTemplates(BaseModel):
    """A kind's `prompts:` block: one Jinja template per field; null uses the one shipped in `dataforge/prompts/`."""

    model_config = ConfigDict(extra="forbid")

    shipped: ClassVar[dict[str, str]] = {}
    """Field -> the shipped template's path under `dataforge/prompts/`."""

    def source(self, name: str) -> str:
        own = getattr(self, name)
        return own if own is not None else load(self.shipped[name])


class TemplatedLLMStep(LLMStep):
    """LLM kinds that send several kinds of prompt, each from a shipped, overridable template with its own
    `Sampling` block, in rounds that depend on earlier answers (so online only)."""

    style: Literal["completion", "chat"] = "completion"
    """`completion`: each prompt is sent as text for the model to continue (base models, as the papers);
    `chat`: as one user message (instruct models)."""
    prompts: PromptTemplates = Field(default_factory=PromptTemplates)
    """Override the shipped prompt templates."""

    own_sampling: ClassVar[bool] = True
    batch_ok: ClassVar[bool] = False

    def check(self, ctx: PlanContext) -> None:
        """Every template compiles (a syntax error names the template and its line), then `LLMStep.check`."""
        for name in type(self.prompts).model_fields:
            try:
                compile_template(self.prompts.source(name))
            except jinja2.TemplateSyntaxError as e:
                raise StepError(self.id, "prompts", f"{name}: template syntax error (line {e.lineno}): "
                                                    f"{e.message}") from None
        super().check(ctx)

    def render(self, name: str, **values: Any) -> str:
        """Template `name` rendered with `values` (an error while rendering is a `StepError` on `prompts`)."""
        try:
            return compile_template(self.prompts.source(name)).render(**values)
        except jinja2.TemplateError as e:
            raise StepError(self.id, "prompts", f"{name}: template error: {e}") from None

    def prompt_request(self, base: dict[str, Any], text: str, sample_index: int = 0, *,
                       chat_text: str | None = None) -> Request:
        """A request for `text` in this step's `style` (`chat_text`, when given, is the chat message instead)."""
        if self.style == "chat":
            return self.request(base, messages=[("user", chat_text if chat_text is not None else text)],
                                sample_index=sample_index)
        return self.request(base, prompt=text, sample_index=sample_index)
