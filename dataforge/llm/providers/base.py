"""The provider interface: one request in, one completion out, typed errors for the retry loop."""

from __future__ import annotations

import abc
import json
import os
import re
import types

from dataforge.llm.config import LLMConfig
from dataforge.llm.types import Completion, Request


class ProviderError(Exception):
    """A failed call. `retryable` errors go back to the retry loop; `fatal` ones stop the run.

    Messages are built by dataforge from the status and the server's error text, passed
    through `redact`, so they never carry a key.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, fatal: bool = False):
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.fatal = fatal
        super().__init__(message)


def classify_status(status: int | None) -> tuple[bool, bool]:
    """(retryable, fatal) for an HTTP status: 408/409/429/5xx retry; 401/403/404 end the run."""
    if status is None:
        return True, False
    if status in (408, 409, 429) or status >= 500:
        return True, False
    return False, status in (401, 403, 404)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` (or `retry-after-ms`) header value; None when absent or a date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_text(status: int | None, body: object, fallback: str) -> str:
    """`HTTP 429 rate_limit_error: <the server's message>` from an OpenAI- or Anthropic-style error body."""
    err = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        kind = err.get("type") or err.get("code")
        return f"HTTP {status}{f' {kind}' if kind else ''}: {err['message']}"
    return f"HTTP {status}: {fallback}"


class Secrets:
    """The key values a provider holds, to scrub them from any text that leaves it."""

    def __init__(self, *values: str | None):
        self.values = [v for v in values if v and len(v) >= 4]

    def redact(self, text: str) -> str:
        for v in self.values:
            text = text.replace(v, "[redacted]")
            # Servers often echo a shortened key ("sk-abc1****wxyz"); drop long fragments of it too.
            for frag in {v[:8], v[-8:]} if len(v) >= 16 else ():
                text = text.replace(frag, "[redacted]")
        return re.sub(r"(?i)(bearer\s+|x-api-key:\s*|api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",]+",
                      r"\1[redacted]", text)


DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""The variable each SDK reads by default; `llm.api_key_env` names another."""


def read_key(cfg: LLMConfig) -> str | None:
    """The key from the environment variable the config names (or the provider's default).

    Required unless `base_url` points at a server of one's own (vLLM, llama.cpp, Ollama, a test server).
    """
    env = cfg.api_key_env or DEFAULT_KEY_ENV[cfg.provider]
    key = os.environ.get(env)
    if not key and cfg.base_url is None:
        from dataforge.errors import UserError

        raise UserError(f"llm.provider {cfg.provider!r} needs an API key: set the environment variable {env} "
                        f"(or name another one with llm.api_key_env)")
    return key


def sdk_error(e: Exception, sdk: types.ModuleType, secrets: Secrets) -> ProviderError:
    """Turn an exception of the `openai` or `anthropic` SDK (same class names in both) into a
    `ProviderError`: status, retry hint from `retry-after`/`retry-after-ms`, redacted text."""
    if isinstance(e, sdk.APIStatusError):
        retryable, fatal = classify_status(e.status_code)
        headers = e.response.headers
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is None and headers.get("retry-after-ms"):
            retry_after = (parse_retry_after(headers.get("retry-after-ms")) or 0) / 1000
        return ProviderError(secrets.redact(error_text(e.status_code, e.body, e.message)[:1000]), status=e.status_code,
                             retryable=retryable, fatal=fatal, retry_after=retry_after)
    if isinstance(e, sdk.APITimeoutError) and _refused(e) is None:
        return ProviderError("timeout: no answer in time", retryable=True)
    if isinstance(e, sdk.APIConnectionError):
        return ProviderError(secrets.redact(f"connection error: {_refused(e) or e.__cause__ or e}")[:500],
                             retryable=True)
    if isinstance(e, (json.JSONDecodeError, sdk.APIResponseValidationError, ValueError,
                      KeyError, IndexError, TypeError, AttributeError)):
        return ProviderError(secrets.redact(f"malformed response: {type(e).__name__}: {e}")[:500], retryable=True)
    return ProviderError(secrets.redact(f"{type(e).__name__}: {e}")[:500])


def _refused(e: BaseException) -> OSError | None:
    """The failure to connect (refused, unreachable, no such host) under `e`, or None. The SDKs' aiohttp
    transport reports every failed connect as a `ConnectTimeout`, a refused port included; the
    error it wraps says what happened."""
    cause = e.__cause__
    while cause is not None:
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return cause
        cause = cause.__cause__
    return None


class Provider(abc.ABC):
    """One configured model endpoint. Implementations are async and hold no per-request state."""

    name: str = ""

    def __init__(self, cfg: LLMConfig):
        self.cfg = cfg
        self.secrets = Secrets()

    @abc.abstractmethod
    async def complete(self, request: Request) -> Completion:
        """Answer one request (one sample); raise `ProviderError` on failure."""

    def request_extra(self) -> dict:
        """Provider-specific parameters that change answers (hashed with the request)."""
        return {}

    async def aclose(self) -> None:
        """Release clients and connections."""
