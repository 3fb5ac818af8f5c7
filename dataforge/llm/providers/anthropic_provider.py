"""`anthropic`: the official SDK's Messages API (base_url configurable for proxies and test servers)."""

from __future__ import annotations

import time

from dataforge.llm.config import LLMConfig
from dataforge.llm.providers.base import Provider, ProviderError, Secrets, read_key
from dataforge.llm.providers.base import sdk_error as base_sdk_error
from dataforge.llm.types import Completion, Request


def sdk_error(e: Exception, secrets: Secrets) -> ProviderError:
    """Turn an anthropic SDK exception into a `ProviderError` (status, retry hint, redacted text)."""
    import anthropic

    return base_sdk_error(e, anthropic, secrets)


def message_body(r: Request) -> dict:
    """The Messages API JSON body for a request (also what a Message Batch item's `params` holds):
    system messages go to `system`, a plain prompt becomes one user turn."""
    if r.messages is not None:
        system = "\n\n".join(m.content for m in r.messages if m.role == "system")
        messages = [m.as_dict() for m in r.messages if m.role != "system"]
    else:
        system, messages = "", [{"role": "user", "content": r.prompt or ""}]
    body: dict = {"model": r.model, "max_tokens": r.max_tokens, "messages": messages, "temperature": r.temperature}
    if system:
        body["system"] = system
    if r.top_p < 1.0:
        body["top_p"] = r.top_p
    if r.stop:
        body["stop_sequences"] = list(r.stop)
    body.update(r.extra)
    return body


# Body fields SDK 2.x no longer types; they still go to the API, through `extra_body`.
_UNTYPED = ("temperature", "top_p", "top_k")


def message_params(r: Request) -> dict:
    """Keyword arguments of the SDK's `messages.create` for a request."""
    body = message_body(r)
    extra = {k: body.pop(k) for k in _UNTYPED if k in body}
    return {**body, "extra_body": extra} if extra else body


def completion_from_message(msg: dict | object, latency_ms: float = 0.0) -> Completion:
    """A `Completion` from a Messages API message (SDK object or plain JSON dict)."""
    get = (lambda o, k: o.get(k)) if isinstance(msg, dict) else getattr  # noqa: E731
    blocks = get(msg, "content") or []
    text = "".join((get(b, "text") or "") for b in blocks if get(b, "type") == "text")
    usage = get(msg, "usage")
    return Completion(text=text, finish_reason=get(msg, "stop_reason"),
                      input_tokens=(get(usage, "input_tokens") or 0) if usage else 0,
                      output_tokens=(get(usage, "output_tokens") or 0) if usage else 0, latency_ms=latency_ms)


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(self, cfg: LLMConfig):
        super().__init__(cfg)
        import anthropic

        key = read_key(cfg) or "not-needed"
        self.secrets = Secrets(key)
        self.client = anthropic.AsyncAnthropic(api_key=key, base_url=cfg.base_url, max_retries=0,
                                               timeout=cfg.timeout_s)

    async def complete(self, request: Request) -> Completion:
        if request.presence_penalty is not None or request.frequency_penalty is not None:
            raise ProviderError("the Anthropic Messages API has no presence_penalty or frequency_penalty")
        t0 = time.perf_counter()
        try:
            msg = await self.client.messages.create(**message_params(request))
        except Exception as e:  # every SDK failure becomes a typed, redacted ProviderError
            raise sdk_error(e, self.secrets) from None
        return completion_from_message(msg, (time.perf_counter() - t0) * 1000)

    async def aclose(self) -> None:
        await self.client.close()
