"""`openai`: the official SDK against api.openai.com or any OpenAI-compatible server (`base_url`)."""

from __future__ import annotations

import ssl
import time

from pydantic_core import from_json

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
    head = {"messages": [m.as_dict() for m in r.messages]} if r.messages is not None else {"prompt": r.prompt}
    return {**head, **sampling_params(r)}


_ssl_context: list[ssl.SSLContext] = []  # the first client's, shared by later ones in this process


def _http_client():
    """The SDK's aiohttp client, with the TLS context of the first one made in this process: building one
    reads the system's CA certificates, about 50 ms each time (a step, a Ray slice)."""
    import openai

    if _ssl_context:
        return openai.DefaultAioHttpClient(verify=_ssl_context[0])
    client = openai.DefaultAioHttpClient()
    made = getattr(getattr(client, "_transport", None), "ssl_context", None)
    if isinstance(made, ssl.SSLContext):
        _ssl_context.append(made)
    return client


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, cfg: LLMConfig):
        super().__init__(cfg)
        import openai

        key = read_key(cfg) or PLACEHOLDER_KEY
        self.secrets = Secrets(key)
        # aiohttp as the SDK's HTTP transport (the SDK's own option "for improved concurrency performance"):
        # at 64 requests in flight it spent about 40% less CPU per call than the default transport, whose
        # connection pool scans every connection on each request and response (benchmarks/scale_out.py
        # --part calls: sdk_floor_cpu_s vs sdk_httpx_floor_cpu_s).
        self.client = openai.AsyncOpenAI(api_key=key, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s,
                                         http_client=_http_client())

    async def complete(self, request: Request) -> Completion:
        # The SDK's generic `post` with the body we build (the one batch files carry too) and the raw bytes
        # back: the SDK still owns auth, base URL, timeouts and error mapping, but skips checking our
        # parameters against its typed signature and building response models, where most of a call's
        # CPU went (benchmarks/llm_throughput.py: a bare gather over `create` reads 1.55x ideal).
        chat = request.messages is not None
        t0 = time.perf_counter()
        try:
            raw = await self.client.post("/chat/completions" if chat else "/completions",
                                         body=request_body(request), cast_to=bytes)
        except Exception as e:  # every SDK failure becomes a typed, redacted ProviderError
            raise sdk_error(e, self.secrets) from None
        latency_ms = (time.perf_counter() - t0) * 1000
        try:
            out = from_json(raw)  # pydantic-core's parser: a third of `json.loads`'s time
            choice = out["choices"][0]
            text = (choice["message"].get("content") if chat else choice.get("text")) or ""
            usage = out.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:  # not a completion's JSON
            raise sdk_error(e, self.secrets) from None
        return Completion(text=text, finish_reason=choice.get("finish_reason"),
                          input_tokens=usage.get("prompt_tokens") or 0,
                          output_tokens=usage.get("completion_tokens") or 0, latency_ms=latency_ms)

    async def aclose(self) -> None:
        await self.client.close()
