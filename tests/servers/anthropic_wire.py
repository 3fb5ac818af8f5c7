"""A loopback server speaking the Anthropic Messages API wire format, for tests of the `anthropic` SDK path.

No Anthropic-compatible server runs offline, so this one imitates the parts dataforge uses, shaped
after the SDK's own types (`anthropic.types.Message`, `MessageBatch`, `MessageBatchIndividualResponse`):

- `POST /v1/messages`: checks the key (`x-api-key`, or `Authorization: Bearer` as SDK 2.x sends it)
  and `anthropic-version`, validates the body the way the
  API does (unknown fields, roles, ranges -> 400 `invalid_request_error`), answers
  `ECHO: <LAST USER MESSAGE UPPER-CASED>` (one word = one token; `max_tokens` and
  `stop_sequences` honoured).
- Error bodies `{"type": "error", "error": {"type", "message"}, "request_id"}` with the API's status
  codes (400, 401, 403, 404, 429 + `retry-after`, 500, 529).
- Fault injection: `fail_next(error_type, times)` fails the next calls; `fail_when(marker, error_type)`
  fails calls whose prompt contains `marker`.
- Message Batches: create, retrieve, list, results (JSONL, in reverse order so clients must match on
  `custom_id`), cancel, delete. A batch ends `processing_s` after creation; `batch_item(marker,
  "errored"|"expired"|"canceled", times)` makes matching items end that way in the next batches.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from servers._http import ItemRule, LoopbackServer, Reply, Req, n_tokens, now_s, reply_text, take_rule

STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
# The fields of `anthropic.types.MessageCreateParams` (SDK 2.x), plus the sampling fields of earlier API
# versions (temperature, top_p, top_k), which SDK 2.x no longer types but can send through `extra_body`.
MESSAGE_FIELDS = {"model", "messages", "max_tokens", "system", "stop_sequences", "metadata", "stream",
                  "service_tier", "thinking", "tools", "tool_choice", "cache_control", "container", "diagnostics",
                  "inference_geo", "output_config", "speed", "user_profile_id",
                  "temperature", "top_p", "top_k"}
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")


class BadRequest(Exception):
    """A body the real API would reject with 400 invalid_request_error."""


@dataclass
class Fault:
    error_type: str
    times: int
    retry_after: float | None
    message: str | None


@dataclass
class Batch:
    id: str
    created: float
    items: list[tuple[str, dict[str, Any]]]
    """(custom_id, result) in submission order; results are decided at creation."""
    processing_s: float
    cancel_at: float | None = None
    ended: float | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


class AnthropicWireServer(LoopbackServer):
    """`with AnthropicWireServer(api_key="sk-ant-test") as s: anthropic.Anthropic(base_url=s.url, ...)`."""

    def __init__(self, api_key: str = "sk-ant-test-key", processing_s: float = 0.2):
        super().__init__()
        self.api_key = api_key
        self.processing_s = processing_s
        """Seconds a new batch stays `in_progress`."""
        self.online_rules: list[ItemRule] = []
        self.batch_rules: list[ItemRule] = []
        self.batches: dict[str, Batch] = {}
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()

    # -- test controls ----------------------------------------------------------
    def fail_next(self, error_type: str, times: int = 1, retry_after: float | None = None,
                  message: str | None = None) -> None:
        """The next `times` calls to `POST /v1/messages` fail with this error type."""
        self.faults.append(Fault(error_type, times, retry_after, message))

    def fail_when(self, marker: str, error_type: str = "invalid_request_error", times: int = 10**9) -> None:
        """Calls whose prompt contains `marker` fail with `error_type`."""
        self.online_rules.append(ItemRule(marker, error_type, times))

    def batch_item(self, marker: str, outcome: str, times: int = 1, error_type: str = "invalid_request_error") -> None:
        """Items of later batches whose prompt contains `marker` end as `outcome` (`times` times);
        `errored` items carry an error of `error_type`."""
        assert outcome in {"errored", "expired", "canceled"}
        self.batch_rules.append(ItemRule(marker, outcome if outcome != "errored" else f"errored:{error_type}", times))

    def finish_batches(self) -> None:
        """Every batch still processing ends at its next status check."""
        with self.lock:
            for b in self.batches.values():
                b.processing_s = 0.0

    # -- helpers -----------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        with self._id_lock:
            return f"{prefix}_{next(self._ids):06d}"

    def error(self, error_type: str, message: str, retry_after: float | None = None) -> Reply:
        headers = {"request-id": self._new_id("req")}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if error_type == "rate_limit_error" and retry_after is None:
            headers["retry-after"] = "1"
        body = {"type": "error", "error": {"type": error_type, "message": message},
                "request_id": headers["request-id"]}
        return Reply.json(STATUS[error_type], body, **headers)

    # -- routing -----------------------------------------------------------------
    def route(self, req: Req) -> Reply:
        bearer = req.headers.get("authorization", "")
        key = req.headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)
        if key != self.api_key:  # older SDKs send `x-api-key`, newer ones `Authorization: Bearer`
            return self.error("authentication_error", "invalid x-api-key")
        if not req.headers.get("anthropic-version"):
            return self.error("invalid_request_error", "anthropic-version: header is required")
        p = req.path.rstrip("/")
        if req.method == "POST" and p == "/v1/messages":
            return self.create_message(req)
        if p == "/v1/messages/batches":
            if req.method == "POST":
                return self.create_batch(req)
            if req.method == "GET":
                with self.lock:
                    data = [self.batch_json(b) for b in reversed(list(self.batches.values()))]
                return Reply.json(200, {"data": data, "has_more": False,
                                        "first_id": data[0]["id"] if data else None,
                                        "last_id": data[-1]["id"] if data else None})
        m = re.fullmatch(r"/v1/messages/batches/([^/]+)(/results|/cancel)?", p)
        if m:
            batch = self.batches.get(m.group(1))
            if batch is None:
                return self.error("not_found_error", f"message batch {m.group(1)} not found")
            action = m.group(2)
            if action is None and req.method == "GET":
                return Reply.json(200, self.batch_json(batch))
            if action is None and req.method == "DELETE":
                if self._refresh(batch) is None:
                    return self.error("invalid_request_error", "cannot delete a batch that is still processing")
                del self.batches[batch.id]
                return Reply.json(200, {"id": batch.id, "type": "message_batch_deleted"})
            if action == "/results" and req.method == "GET":
                return self.results(batch)
            if action == "/cancel" and req.method == "POST":
                with self.lock:
                    if self._refresh(batch) is None and batch.cancel_at is None:
                        batch.cancel_at = now_s()
                return Reply.json(200, self.batch_json(batch))
        return self.error("not_found_error", f"{req.method} {req.path} is not an endpoint")

    # -- messages ----------------------------------------------------------------
    def create_message(self, req: Req) -> Reply:
        fault = self._take_fault()
        if fault is not None:
            return self.error(fault.error_type, fault.message or _default_message(fault.error_type),
                              fault.retry_after)
        try:
            body = req.json()
            prompt = validate_params(body)
        except (BadRequest, ValueError) as e:
            return self.error("invalid_request_error", str(e))
        with self.lock:
            rule = take_rule(self.online_rules, prompt)
        if rule is not None:
            return self.error(rule, _default_message(rule))
        return Reply.json(200, self.message(body), **{"request-id": self._new_id("req")})

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        """The `Message` object answering a validated request body."""
        prompt = last_user_text(body["messages"])
        text, truncated = reply_text(prompt, body["max_tokens"])
        stop_reason, stop_sequence = ("max_tokens" if truncated else "end_turn"), None
        for seq in body.get("stop_sequences") or []:
            if seq in text:
                text, stop_reason, stop_sequence = text.split(seq, 1)[0], "stop_sequence", seq
                break
        system = body.get("system") or ""
        if isinstance(system, list):
            system = " ".join(b.get("text", "") for b in system)
        in_tokens = n_tokens(system) + sum(n_tokens(content_text(m["content"])) for m in body["messages"])
        return {
            "id": self._new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {"input_tokens": in_tokens, "output_tokens": n_tokens(text),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }

    # -- batches -----------------------------------------------------------------
    def create_batch(self, req: Req) -> Reply:
        try:
            body = req.json()
            if not isinstance(body, dict) or set(body) != {"requests"}:
                raise BadRequest("requests: Field required" if not isinstance(body, dict) or "requests" not in body
                                 else f"{sorted(set(body) - {'requests'})[0]}: Extra inputs are not permitted")
            items = body["requests"]
            if not isinstance(items, list) or not items:
                raise BadRequest("requests: List should have at least 1 item")
            seen: set[str] = set()
            prompts = []
            for i, item in enumerate(items):
                cid = item.get("custom_id")
                if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
                    raise BadRequest(f"requests.{i}.custom_id: String should match pattern "
                                     f"'^[a-zA-Z0-9_-]{{1,64}}$'")
                if cid in seen:
                    raise BadRequest(f"requests.{i}.custom_id: duplicate custom_id {cid!r} in batch")
                seen.add(cid)
                try:
                    prompts.append(validate_params(item.get("params"), batch=True))
                except BadRequest as e:
                    raise BadRequest(f"requests.{i}.params.{e}") from None
        except (BadRequest, ValueError) as e:
            return self.error("invalid_request_error", str(e))
        results = []
        with self.lock:
            for item, prompt in zip(items, prompts):
                outcome = take_rule(self.batch_rules, prompt)
                if outcome is None:
                    result = {"type": "succeeded", "message": self.message(item["params"])}
                elif outcome.startswith("errored:"):
                    etype = outcome.split(":", 1)[1]
                    result = {"type": "errored", "error": {
                        "type": "error", "request_id": self._new_id("req"),
                        "error": {"type": etype, "message": f"injected item error ({etype})"}}}
                else:
                    result = {"type": outcome}
                results.append((item["custom_id"], result))
            batch = Batch(self._new_id("msgbatch"), now_s(), results, self.processing_s)
            batch.params = {item["custom_id"]: item["params"] for item in items}
            self.batches[batch.id] = batch
        return Reply.json(200, self.batch_json(batch))

    def _refresh(self, batch: Batch) -> float | None:
        """End the batch if its time has come; return when it ended (None while processing)."""
        if batch.ended is None:
            t = now_s()
            if batch.cancel_at is not None:
                batch.ended = t
                batch.items = [(cid, r if r["type"] != "succeeded" else {"type": "canceled"})
                               for cid, r in batch.items]
            elif t - batch.created >= batch.processing_s:
                batch.ended = t
        return batch.ended

    def batch_json(self, batch: Batch) -> dict[str, Any]:
        with self.lock:
            ended = self._refresh(batch)
            counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
            if ended is None:
                counts["processing"] = len(batch.items)
            else:
                for _, r in batch.items:
                    counts[r["type"]] += 1
            status = "ended" if ended is not None else ("canceling" if batch.cancel_at else "in_progress")
            return {
                "id": batch.id,
                "type": "message_batch",
                "processing_status": status,
                "request_counts": counts,
                "created_at": rfc3339(batch.created),
                "expires_at": rfc3339(batch.created + 86400),
                "ended_at": rfc3339(ended),
                "cancel_initiated_at": rfc3339(batch.cancel_at),
                "archived_at": None,
                "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
            }

    def results(self, batch: Batch) -> Reply:
        with self.lock:
            if self._refresh(batch) is None:
                return self.error("invalid_request_error",
                                  f"message batch {batch.id} is still processing; results are not available")
            lines = [json.dumps({"custom_id": cid, "result": r}) for cid, r in reversed(batch.items)]
        return Reply(200, ("\n".join(lines) + "\n").encode(), {"content-type": "application/binary"})


def _default_message(error_type: str) -> str:
    return {
        "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
        "overloaded_error": "Overloaded",
        "api_error": "Internal server error",
        "authentication_error": "invalid x-api-key",
        "invalid_request_error": "prompt is invalid",
    }.get(error_type, error_type)


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m["role"] == "user":
            return content_text(m["content"])
    return ""


def validate_params(body: Any, batch: bool = False) -> str:
    """Check a Messages request body like the API does; return the last user message's text."""
    if not isinstance(body, dict):
        raise BadRequest("body: Input should be a valid dictionary")
    for key in body:
        if key not in MESSAGE_FIELDS:
            raise BadRequest(f"{key}: Extra inputs are not permitted")
    for key in ("model", "messages", "max_tokens"):
        if key not in body:
            raise BadRequest(f"{key}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise BadRequest("model: Input should be a valid string")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise BadRequest("max_tokens: Input should be greater than or equal to 1")
    if body.get("stream"):
        raise BadRequest("stream: streaming is not supported by this test server" if not batch
                         else "stream: streaming is not supported in batches")
    msgs = body["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: List should have at least 1 item")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            role = m.get("role") if isinstance(m, dict) else None
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant' (got {role!r}); "
                             f"put system prompts in the top-level `system` parameter")
        c = m.get("content")
        if not (isinstance(c, str) or isinstance(c, list)):
            raise BadRequest(f"messages.{i}.content: Input should be a valid string or list of content blocks")
    if msgs[0]["role"] != "user":
        raise BadRequest("messages: first message must use the \"user\" role")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise BadRequest("system: Input should be a valid string or list of text blocks")
    for key, hi in (("temperature", 1.0), ("top_p", 1.0)):
        v = body.get(key)
        if v is not None and (not isinstance(v, (int, float)) or not 0 <= v <= hi):
            raise BadRequest(f"{key}: range: 0..{hi:g}")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) and s.strip()
                                                                    for s in stops)):
        raise BadRequest("stop_sequences: each stop sequence must contain non-whitespace")
    return last_user_text(msgs)
