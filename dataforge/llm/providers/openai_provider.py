"""`openai`: the official SDK against api.openai.com or any OpenAI-compatible server (`base_url`)."""

from __future__ import annotations

import time

from dataforge.llm.config import LLMConfig
from dataforge.llm.providers.base import Provider, ProviderError, Secrets, read_key
from dataforge.llm.providers.base import sdk_error as base_sdk_error
from dataforge.llm.types import Completion, Request

# vLLM, llama.cpp's server and Ollama accept any key; the SDK insists on having one.
PLACEHOLDER_KEY = "not-needed"


def sdk_error(e: Exception, secrets: Secrets) -> ProviderError:
    """Turn an OpenAI SDK exception into a `ProviderError` (status, retry hint, redacted text)."""
    import openai

    return base_sdk_error(e, openai, secrets)


def sampling_params(r: Request) -> dict:
    """A request's model and sampling parameters as the API takes them (online and in batch files alike)."""
    p: dict = {"model": r.model, "temperature": r.temperature, "top_p": r.top_p, "max_tokens": r.max_tokens}
    if r.stop:
        p["stop"] = list(r.stop)
    for k in ("presence_penalty", "frequency_penalty"):
        if getattr(r, k) is not None:
            p[k] = getattr(r, k)
    if r.seed is not None:
        p["seed"] = r.seed + r.sample_index
    p.update(r.extra)
    return p


def request_body(r: Request) -> dict:
    """The whole JSON body of a request: `messages` (chat completions) or `prompt` (completions) + parameters."""
    head = {"messages": [m.model_dump() for m in r.messages]} if r.messages is not None else {"prompt": r.prompt}
    return {**head, **sampling_params(r)}


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, cfg: LLMConfig):
        super().__init__(cfg)
        import openai

        key = read_key(cfg) or PLACEHOLDER_KEY
        self.secrets = Secrets(key)
        self.client = openai.AsyncOpenAI(api_key=key, base_url=cfg.base_url, max_retries=0,
                                         timeout=cfg.timeout_s)

    def _params(self, r: Request) -> dict:
        return sampling_params(r)

    async def complete(self, request: Request) -> Completion:
        t0 = time.perf_counter()
        try:
            if request.messages is not None:
                resp = await self.client.chat.completions.create(
                    messages=[m.model_dump() for m in request.messages], **self._params(request))
                choice = resp.choices[0]
                text = choice.message.content or ""
            else:
                resp = await self.client.completions.create(prompt=request.prompt, **self._params(request))
                choice = resp.choices[0]
                text = choice.text or ""
        except Exception as e:  # every SDK failure becomes a typed, redacted ProviderError
            raise sdk_error(e, self.secrets) from None
        usage = resp.usage
        return Completion(text=text, finish_reason=choice.finish_reason,
                          input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          output_tokens=getattr(usage, "completion_tokens", 0) or 0,
                          latency_ms=(time.perf_counter() - t0) * 1000)

    async def aclose(self) -> None:
        await self.client.close()
