"""Provider batch APIs behind one small synchronous interface: submit, poll, collect.

`AnthropicBatches` uses Message Batches, `OpenAIBatches` the Files + Batch API. Each item's
`custom_id` is the request hash (64 hex characters, which fits Anthropic's custom_id pattern).
Any SDK failure becomes `BatchAPIError` (a `UserError`) with the key scrubbed from its text.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from dataforge.errors import UserError
from dataforge.llm.config import LLMConfig
from dataforge.llm.providers.base import Secrets, classify_status, read_key
from dataforge.llm.types import Completion, Request


INTENT_TAG = "dataforge_intent"
"""Metadata key (where a batch API has metadata) naming the intent a batch was submitted for."""
FIND_SLACK = dt.timedelta(minutes=10)
"""How much older than its intent's record a batch may look (clock skew between us and the provider)."""


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


class BatchAPIError(UserError):
    """A batch API call failed after the SDK's retries (bad key, unknown model, server down...)."""


class BatchNotFound(BatchAPIError):
    """The provider answered 404 for a stored batch id (deleted, or another account's)."""


@dataclass
class ItemFailure:
    """One batch item that did not produce an answer."""

    status: str
    """`errored`, `expired`, `canceled`, `failed` (the whole batch was rejected) or `lost` (the provider
    no longer knows the batch)."""
    error: str
    retryable: bool
    """True when submitting the item again may succeed (expired, canceled, 429/5xx-type errors)."""


ItemOutcome = Completion | ItemFailure


def endpoint_label(cfg: LLMConfig) -> str:
    """Where batches live, for matching stored batches to this config: the base URL without credentials."""
    if not cfg.base_url:
        return "default"
    parts = urlsplit(cfg.base_url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


class BatchBackend(abc.ABC):
    """One provider's batch API."""

    max_items: int
    """Most requests one batch may hold."""
    _sdk_error: Callable[[Exception, Secrets], Exception]
    """The provider module's SDK-exception -> redacted `ProviderError` mapping."""

    def __init__(self, cfg: LLMConfig):
        self.cfg = cfg
        self.key = read_key(cfg) or "not-needed"
        self.secrets = Secrets(self.key)

    def group(self, r: Request) -> str:
        """Requests of different groups never share a batch (OpenAI: one endpoint per batch)."""
        return ""

    @abc.abstractmethod
    def submit(self, items: list[tuple[str, Request]], meta: dict[str, str]) -> str:
        """Create one batch of (custom_id, request) items; return its id."""

    @abc.abstractmethod
    def ended(self, batch_id: str) -> bool:
        """True once the batch has stopped processing (its results can be collected)."""

    @abc.abstractmethod
    def collect(self, batch_id: str) -> dict[str, ItemOutcome]:
        """custom_id -> outcome for every item of an ended batch."""

    def failed_reason(self, batch_id: str) -> str | None:
        """Why the provider rejected a whole ended batch (items without a result get this as their error)."""
        return None

    @abc.abstractmethod
    def find(self, intent: str, since: dt.datetime, custom_ids: set[str]) -> str | None:
        """The id of the batch submitted for `intent` (recorded at `since`, UTC) with these items, or None."""

    def close(self) -> None:
        """Release the client."""

    def _call(self, what: str, fn: Callable[[], Any], *, polling: bool = False) -> Any:
        """Run one SDK call; failures leave as `BatchAPIError` (`BatchNotFound` for a 404 while polling)."""
        try:
            return fn()
        except Exception as e:  # every SDK failure leaves as a redacted, user-facing error
            err = self._sdk_error(e, self.secrets)
            if polling and getattr(err, "status", None) == 404:
                raise BatchNotFound(f"{self.cfg.provider} batch API: {what}: not found ({err})") from None
            raise BatchAPIError(f"{self.cfg.provider} batch API: {what} failed: {err}; "
                                "check llm.model, llm.base_url and the API key variable") from None


class AnthropicBatches(BatchBackend):
    """Anthropic Message Batches (`POST /v1/messages/batches`, results as JSONL)."""

    max_items = 100_000

    def __init__(self, cfg: LLMConfig):
        super().__init__(cfg)
        import anthropic

        from dataforge.llm.providers.anthropic_provider import sdk_error

        self._sdk_error = sdk_error
        self.client = anthropic.Anthropic(api_key=self.key, base_url=cfg.base_url, max_retries=cfg.max_retries,
                                          timeout=cfg.timeout_s)

    def submit(self, items: list[tuple[str, Request]], meta: dict[str, str]) -> str:
        from dataforge.llm.providers.anthropic_provider import message_body

        reqs = [{"custom_id": cid, "params": message_body(r)} for cid, r in items]
        batch = self._call("creating a message batch", lambda: self.client.messages.batches.create(requests=reqs))
        return batch.id

    def ended(self, batch_id: str) -> bool:
        b = self._call(f"checking batch {batch_id}", lambda: self.client.messages.batches.retrieve(batch_id),
                       polling=True)
        return b.processing_status == "ended"

    def find(self, intent: str, since: dt.datetime, custom_ids: set[str]) -> str | None:
        # Message batches carry no metadata: a batch created after the intent with as many requests is it,
        # confirmed by its items' custom ids (our request hashes) once it has ended.
        since = _utc(since)

        def candidates() -> list[Any]:
            out = []
            for b in self.client.messages.batches.list(limit=100):
                if _utc(b.created_at) < since - FIND_SLACK:
                    break
                counts = b.request_counts
                total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
                if total == len(custom_ids):
                    out.append(b)
            return out

        for b in self._call("listing message batches", candidates):
            if b.processing_status != "ended":
                return b.id
            ids = {line.custom_id for line in self._call(f"reading the results of batch {b.id}",
                                                         lambda: list(self.client.messages.batches.results(b.id)))}
            if ids == custom_ids:
                return b.id
        return None

    def collect(self, batch_id: str) -> dict[str, ItemOutcome]:
        from dataforge.llm.providers.anthropic_provider import completion_from_message

        lines = self._call(f"reading the results of batch {batch_id}",
                           lambda: list(self.client.messages.batches.results(batch_id)))
        out: dict[str, ItemOutcome] = {}
        for line in lines:
            res = line.result
            if res.type == "succeeded":
                out[line.custom_id] = completion_from_message(res.message)
            elif res.type == "errored":
                err = res.error.error
                retryable = err.type in ("api_error", "overloaded_error", "rate_limit_error", "timeout_error")
                out[line.custom_id] = ItemFailure("errored", self.secrets.redact(f"{err.type}: {err.message}"),
                                                  retryable)
            else:  # expired (not processed within 24 h) or canceled: never started, safe to send again
                out[line.custom_id] = ItemFailure(res.type, f"batch item {res.type}", True)
        return out

    def close(self) -> None:
        self.client.close()


class OpenAIBatches(BatchBackend):
    """OpenAI Batch API: upload a JSONL file (purpose `batch`), create a batch, read output/error files."""

    max_items = 50_000
    ENDED = {"completed", "expired", "failed", "cancelled"}

    def __init__(self, cfg: LLMConfig):
        super().__init__(cfg)
        import openai

        from dataforge.llm.providers.openai_provider import sdk_error

        self._sdk_error = sdk_error
        self.client = openai.OpenAI(api_key=self.key, base_url=cfg.base_url, max_retries=cfg.max_retries,
                                    timeout=cfg.timeout_s)
        self._failed: dict[str, str] = {}

    def group(self, r: Request) -> str:
        return "/v1/chat/completions" if r.messages is not None else "/v1/completions"

    def submit(self, items: list[tuple[str, Request]], meta: dict[str, str]) -> str:
        from dataforge.llm.providers.openai_provider import request_body

        url = self.group(items[0][1])
        lines = [json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": request_body(r)},
                            ensure_ascii=False) for cid, r in items]
        data = ("\n".join(lines) + "\n").encode()
        f = self._call("uploading the batch input file",
                       lambda: self.client.files.create(file=("dataforge-batch.jsonl", data), purpose="batch"))
        batch = self._call("creating a batch", lambda: self.client.batches.create(
            input_file_id=f.id, endpoint=url, completion_window="24h", metadata=meta))
        return batch.id

    def ended(self, batch_id: str) -> bool:
        b = self._call(f"checking batch {batch_id}", lambda: self.client.batches.retrieve(batch_id), polling=True)
        return b.status in self.ENDED

    def find(self, intent: str, since: dt.datetime, custom_ids: set[str]) -> str | None:
        since = _utc(since)

        def search() -> str | None:
            for b in self.client.batches.list(limit=100):  # newest first, pages fetched as needed
                if dt.datetime.fromtimestamp(b.created_at, dt.timezone.utc) < since - FIND_SLACK:
                    return None
                if (b.metadata or {}).get(INTENT_TAG) == intent:
                    return b.id
            return None

        return self._call("listing batches", search)

    def collect(self, batch_id: str) -> dict[str, ItemOutcome]:
        b = self._call(f"checking batch {batch_id}", lambda: self.client.batches.retrieve(batch_id), polling=True)
        if b.status == "failed":  # the input file was rejected; the errors name its lines
            errs = [f"line {e.line}: {e.message}" if e.line else str(e.message) for e in (b.errors.data or [])] \
                if b.errors else []
            self._failed[batch_id] = self.secrets.redact("; ".join(errs)[:1000] or "batch failed")
        out: dict[str, ItemOutcome] = {}
        for file_id in (b.output_file_id, b.error_file_id):
            if not file_id:
                continue
            text = self._call(f"reading file {file_id} of batch {batch_id}",
                              lambda: self.client.files.content(file_id).text)
            for raw in text.splitlines():
                if raw.strip():
                    line = json.loads(raw)
                    out[line["custom_id"]] = self._outcome(line)
        return out

    def failed_reason(self, batch_id: str) -> str | None:
        return self._failed.get(batch_id)

    def _outcome(self, line: dict[str, Any]) -> ItemOutcome:
        resp, err = line.get("response"), line.get("error")
        if resp and resp.get("status_code") == 200:
            body = resp["body"]
            choice = body["choices"][0]
            text = choice["message"].get("content") if "message" in choice else choice.get("text")
            usage = body.get("usage") or {}
            return Completion(text=text or "", finish_reason=choice.get("finish_reason"),
                              input_tokens=usage.get("prompt_tokens") or 0,
                              output_tokens=usage.get("completion_tokens") or 0)
        if err:
            code = err.get("code") or "error"
            status = "expired" if code == "batch_expired" else ("canceled" if "cancel" in code else "errored")
            return ItemFailure(status, self.secrets.redact(f"{code}: {err.get('message')}"),
                               status != "errored" or code in ("server_error", "rate_limit_exceeded"))
        code = resp.get("status_code") if resp else None
        message = ((resp or {}).get("body") or {}).get("error", {}).get("message", "no answer")
        retryable, _ = classify_status(code)
        return ItemFailure("errored", self.secrets.redact(f"HTTP {code}: {message}"), retryable)

    def close(self) -> None:
        self.client.close()


def make_backend(cfg: LLMConfig) -> BatchBackend:
    """The batch backend for `cfg.provider`; `local` has none."""
    if cfg.provider == "anthropic":
        return AnthropicBatches(cfg)
    if cfg.provider == "openai":
        return OpenAIBatches(cfg)
    raise UserError(f"mode: batch needs llm.provider openai or anthropic (a provider with a batch API), "
                    f"not {cfg.provider!r}; use mode: online")
