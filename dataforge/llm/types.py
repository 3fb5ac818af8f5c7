"""Provider-neutral request and completion types, and the canonical request hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str

    def as_dict(self) -> dict[str, str]:
        """`{"role": ..., "content": ...}`, as chat APIs take it (a fraction of `model_dump`'s cost)."""
        return {"role": self.role, "content": self.content}


class Request(BaseModel):
    """One sample from one prompt. `sample_index` separates the n samples of the same prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str
    messages: tuple[Message, ...] | None = None
    """Chat messages; exactly one of `messages` and `prompt` is set."""
    prompt: str | None = None
    """A plain completion prompt (for base models)."""
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    sample_index: int = 0
    extra: dict[str, Any] = Field(default_factory=dict)
    """Provider-specific parameters that change the answer (they are hashed too)."""

    def canonical(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        for k in _OPTIONAL:  # unset: left out, so requests made before these fields existed keep their hash
            if d[k] is None:
                del d[k]
        return d

    def hash(self) -> str:
        """sha256 over the canonical JSON of everything that determines the answer."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def prompt_text(self) -> str:
        """The prompt as one string, for the call log."""
        if self.prompt is not None:
            return self.prompt
        return json.dumps([m.as_dict() for m in self.messages or ()], ensure_ascii=False)


_OPTIONAL = ("presence_penalty", "frequency_penalty")


class Completion(BaseModel):
    """What a provider returned for one request."""

    model_config = ConfigDict(extra="forbid")

    text: str
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    cached: bool = False
    """True when answered from the call log instead of the provider."""

    @property
    def truncated(self) -> bool:
        """True when the answer was cut at `max_tokens`: OpenAI-style servers and llama.cpp say `length`,
        the Anthropic Messages API says `max_tokens` (logged as the provider wrote it)."""
        return self.finish_reason in TRUNCATED_REASONS


TRUNCATED_REASONS = ("length", "max_tokens")


class CallFailure(BaseModel):
    """A request that could not be answered (after retries), or whose answer failed to parse."""

    model_config = ConfigDict(extra="forbid")

    error: str
    status: str = "error"
    """`error` (provider failed after retries), `skipped` (budget/max_calls reached), `parse_error`."""
