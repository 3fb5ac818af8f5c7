"""Providers behind one async interface; `make_provider` builds the one a config names."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from dataforge.llm.config import LLMConfig
from dataforge.llm.providers.base import Provider, ProviderError


def make_provider(cfg: LLMConfig, resolve: Callable[[str], Path] | None = None) -> Provider:
    """The provider for `cfg.provider`; `resolve` maps a recipe-relative `model_path` to a file."""
    if cfg.provider == "local":
        from dataforge.llm.providers.local import LocalProvider, model_file

        return LocalProvider(cfg, model_file(cfg, resolve or Path))
    if cfg.provider == "openai":
        from dataforge.llm.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(cfg)
    if cfg.provider == "anthropic":
        from dataforge.llm.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(cfg)
    raise ValueError(f"unknown provider {cfg.provider!r}")


__all__ = ["Provider", "ProviderError", "make_provider"]
