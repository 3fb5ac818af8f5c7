"""What calls cost: a price table per model (USD per million tokens), overridable by the recipe's `llm.prices`."""

from __future__ import annotations

from dataforge.llm.config import LLMConfig

# model name prefix -> (USD per 1M input tokens, USD per 1M output tokens), list prices.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-haiku-4": (1.00, 5.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),  # Opus 4 and 4.1
    "claude-opus-4-5": (5.00, 25.00),
}

BATCH_DISCOUNT = 0.5
"""Batch APIs (OpenAI Batch, Anthropic Message Batches) bill half the online price."""


def price(cfg: LLMConfig, model: str | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for the model; None when unknown. `local` is free."""
    model = model or cfg.model
    if cfg.prices and model in cfg.prices:
        return tuple(cfg.prices[model])  # type: ignore[return-value]
    if cfg.provider == "local":
        return (0.0, 0.0)
    best = max((p for p in PRICES if model.startswith(p)), key=len, default=None)
    return PRICES[best] if best else None


def cost_usd(cfg: LLMConfig, input_tokens: int, output_tokens: int, *, batch: bool = False,
             model: str | None = None) -> float:
    """Dollars for one call; 0 for unknown models (the engine warns once)."""
    return cost_at(price(cfg, model), input_tokens, output_tokens, batch=batch)


def cost_at(p: tuple[float, float] | None, input_tokens: int, output_tokens: int, *, batch: bool = False) -> float:
    """Dollars for one call at `p` (a `price`, looked up once by a caller pricing many calls); 0 when None."""
    if p is None:
        return 0.0
    usd = (input_tokens * p[0] + output_tokens * p[1]) / 1_000_000
    return usd * BATCH_DISCOUNT if batch else usd
