"""A loopback OpenAI-compatible server with the Batch API, for tests of the `openai` SDK path.

Shaped after the SDK's types (`openai.types.Batch`, `FileObject`, `ChatCompletion`, `Completion`):

- `POST /v1/chat/completions` and `POST /v1/completions`: answer `ECHO: <LAST USER MESSAGE UPPER-CASED>`
  (one word = one token, `max_tokens`/`max_completion_tokens` and `stop` honoured). Errors use the
  OpenAI body `{"error": {"message", "type", "param", "code"}}`; `fail_next(status, times)` and
  `fail_when(marker, status)` inject them (429 carries `retry-after`).
- Files: `POST /v1/files` (multipart, `purpose=batch`), `GET /v1/files/{id}`, `GET /v1/files/{id}/content`.
- Batches: `GET /v1/batches` (list, newest first), `POST /v1/batches` (input JSONL validated line by line; a bad file makes the batch `failed`
  with `errors.data`), `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`. Status goes
  validating -> in_progress -> completed, or `expired` when an item was made to expire; answers go to
  `output_file_id`, failed and expired items to `error_file_id`. `batch_item(marker, "failed"|"expired",
  times)` decides the fate of matching items in the next batches.
- Auth: `Authorization: Bearer <api_key>`, else 401 `invalid_api_key`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from servers._http import ItemRule, LoopbackServer, Reply, Req, n_tokens, now_s, reply_text, take_rule

ENDPOINTS = {"/v1/chat/completions", "/v1/completions"}
ERROR_TYPES = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
               404: ("invalid_request_error", None), 429: ("requests", "rate_limit_exceeded"),
               500: ("server_error", None), 503: ("server_error", None)}


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass
class Fault:
    status: int
    times: int
    retry_after: float | None


@dataclass
class Batch:
    id: str
    endpoint: str
    input_file_id: str
    created: float
    validating_s: float
    processing_s: float
    metadata: dict[str, str] | None
    lines: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    """Per line: "ok", "failed:<status>" or "expired" (decided at creation)."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    """File-level validation errors: the batch ends `failed`."""
    cancelled_at: float | None = None
    finished: dict[str, Any] | None = None
    """Once ended: status, timestamps and file ids."""


class OpenAIBatchServer(LoopbackServer):
    """`with OpenAIBatchServer() as s: openai.OpenAI(base_url=s.url + "/v1", api_key=s.api_key)`."""

    def __init__(self, api_key: str = "sk-test-openai-key", validating_s: float = 0.05,
                 processing_s: float = 0.2):
        super().__init__()
        self.api_key = api_key
        self.validating_s = validating_s
        """Seconds a new batch stays `validating`."""
        self.processing_s = processing_s
        """Seconds a batch stays `in_progress` after validation."""
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, Batch] = {}
        self.online_rules: list[ItemRule] = []
        self.batch_rules: list[ItemRule] = []
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()

    # -- test controls ----------------------------------------------------------
    def fail_next(self, status: int = 429, times: int = 1, retry_after: float | None = None) -> None:
        """The next `times` completion calls fail with this HTTP status."""
        self.faults.append(Fault(status, times, retry_after))

    def fail_when(self, marker: str, status: int = 400, times: int = 10**9) -> None:
        """Completion calls whose prompt contains `marker` fail with `status`."""
        self.online_rules.append(ItemRule(marker, str(status), times))

    def batch_item(self, marker: str, outcome: str, times: int = 1, status: int = 500) -> None:
        """Items of later batches whose prompt contains `marker` end `failed` (with HTTP `status`) or `expired`
        (`times` times)."""
        assert outcome in {"failed", "expired"}
        self.batch_rules.append(ItemRule(marker, outcome if outcome == "expired" else f"failed:{status}", times))

    def finish_batches(self) -> None:
        """Every batch still validating or in progress ends at its next status check."""
        with self.lock:
            for b in self.batches.values():
                b.validating_s = b.processing_s = 0.0

    # -- helpers -------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        with self._id_lock:
            return f"{prefix}-{next(self._ids):06d}" if prefix == "file" else f"{prefix}_{next(self._ids):06d}"

    @staticmethod
    def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
        etype, code = ERROR_TYPES.get(status, ("invalid_request_error", None))
        return {"error": {"message": message, "type": etype, "param": param, "code": code}}

    def error(self, status: int, message: str, param: str | None = None,
              retry_after: float | None = None) -> Reply:
        headers = {"x-request-id": self._new_id("req")}
        if status == 429:
            headers["retry-after"] = f"{retry_after if retry_after is not None else 1:g}"
        return Reply.json(status, self.error_body(status, message, param), **headers)

    # -- routing ---------------------------------------------------------------------
    def route(self, req: Req) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error(401, "Incorrect API key provided. You can find your API key in your account.")
        p = req.path.rstrip("/")
        if req.method == "POST" and p in ENDPOINTS:
            fault = self._take_fault()
            if fault is not None:
                return self.error(fault.status, f"injected error {fault.status}", retry_after=fault.retry_after)
            try:
                body = req.json()
                prompt = validate_body(p, body)
            except (BadRequest, ValueError) as e:
                return self.error(400, str(e), getattr(e, "param", None))
            with self.lock:
                rule = take_rule(self.online_rules, prompt)
            if rule is not None:
                return self.error(int(rule), f"injected error {rule}")
            return Reply.json(200, self.completion(p, body), **{"x-request-id": self._new_id("req")})
        if req.method == "POST" and p == "/v1/files":
            return self.upload(req)
        m = re.fullmatch(r"/v1/files/([^/]+)(/content)?", p)
        if m and req.method == "GET":
            f = self.files.get(m.group(1))
            if f is None:
                return self.error(404, f"No such File object: {m.group(1)}", "id")
            if m.group(2):
                return Reply(200, f["content"], {"content-type": "application/octet-stream"})
            return Reply.json(200, f["object"])
        if req.method == "POST" and p == "/v1/batches":
            return self.create_batch(req)
        if req.method == "GET" and p == "/v1/batches":  # newest first, one page
            with self.lock:
                data = [self.batch_json(b) for b in reversed(list(self.batches.values()))]
            return Reply.json(200, {"object": "list", "data": data, "has_more": False,
                                    "first_id": data[0]["id"] if data else None,
                                    "last_id": data[-1]["id"] if data else None})
        m = re.fullmatch(r"/v1/batches/([^/]+)(/cancel)?", p)
        if m:
            batch = self.batches.get(m.group(1))
            if batch is None:
                return self.error(404, f"No batch found with id '{m.group(1)}'.", "batch_id")
            if m.group(2) and req.method == "POST":
                with self.lock:
                    if batch.finished is None and batch.cancelled_at is None:
                        batch.cancelled_at = now_s()
            return Reply.json(200, self.batch_json(batch))
        return self.error(404, f"Invalid URL ({req.method} {req.path})")

    # -- completions ----------------------------------------------------------------------
    def completion(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """The ChatCompletion / Completion object answering a validated body."""
        chat = endpoint == "/v1/chat/completions"
        prompt = last_user_text(body["messages"]) if chat else body["prompt"]
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        text, truncated = reply_text(prompt, limit)
        finish = "length" if truncated else "stop"
        stops = body.get("stop") or []
        for seq in [stops] if isinstance(stops, str) else stops:
            if seq in text:
                text, finish = text.split(seq, 1)[0], "stop"
                break
        in_tokens = (sum(n_tokens(m.get("content") or "") for m in body["messages"]) if chat
                     else n_tokens(body["prompt"]))
        usage = {"prompt_tokens": in_tokens, "completion_tokens": n_tokens(text),
                 "total_tokens": in_tokens + n_tokens(text)}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                      "finish_reason": finish, "logprobs": None}
            return {"id": self._new_id("chatcmpl"), "object": "chat.completion", "created": int(now_s()),
                    "model": body["model"], "choices": [choice], "usage": usage, "system_fingerprint": None}
        return {"id": self._new_id("cmpl"), "object": "text_completion", "created": int(now_s()),
                "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}

    # -- files ------------------------------------------------------------------------------
    def upload(self, req: Req) -> Reply:
        if not req.headers.get("content-type", "").startswith("multipart/form-data"):
            return self.error(400, "Expected a multipart/form-data body")
        form = req.form()
        if "file" not in form:
            return self.error(400, "Missing required parameter: 'file'.", "file")
        purpose = form.get("purpose", (None, b""))[1].decode()
        if purpose not in {"batch", "fine-tune", "assistants", "user_data", "evals", "vision"}:
            return self.error(400, f"Invalid value for 'purpose': {purpose!r}.", "purpose")
        filename, content = form["file"]
        return Reply.json(200, self._store_file(filename or "upload", content, purpose))

    def _store_file(self, filename: str, content: bytes, purpose: str) -> dict[str, Any]:
        obj = {"id": self._new_id("file"), "object": "file", "bytes": len(content), "created_at": int(now_s()),
               "filename": filename, "purpose": purpose, "status": "processed", "expires_at": None,
               "status_details": None}
        with self.lock:
            self.files[obj["id"]] = {"object": obj, "content": content}
        return obj

    # -- batches ------------------------------------------------------------------------------
    def create_batch(self, req: Req) -> Reply:
        try:
            body = req.json()
        except ValueError as e:
            return self.error(400, str(e))
        for key in ("input_file_id", "endpoint", "completion_window"):
            if key not in body:
                return self.error(400, f"Missing required parameter: '{key}'.", key)
        if body["completion_window"] != "24h":
            return self.error(400, "Invalid value for 'completion_window': only '24h' is supported.",
                              "completion_window")
        if body["endpoint"] not in ENDPOINTS:
            return self.error(400, f"Invalid value for 'endpoint': {body['endpoint']!r}.", "endpoint")
        f = self.files.get(body["input_file_id"])
        if f is None:
            return self.error(404, f"No such File object: {body['input_file_id']}", "input_file_id")
        if f["object"]["purpose"] != "batch":
            return self.error(400, "The input file must be uploaded with purpose 'batch'.", "input_file_id")
        batch = Batch(self._new_id("batch"), body["endpoint"], body["input_file_id"], now_s(),
                      self.validating_s, self.processing_s, body.get("metadata"))
        seen: set[str] = set()
        for i, raw in enumerate(f["content"].decode().splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                cid = line.get("custom_id")
                if not isinstance(cid, str) or not cid:
                    raise BadRequest("custom_id is required", "custom_id")
                if cid in seen:
                    raise BadRequest(f"The custom_id {cid!r} is used more than once in the file.", "custom_id")
                seen.add(cid)
                if line.get("method") != "POST":
                    raise BadRequest("method must be 'POST'", "method")
                if line.get("url") != batch.endpoint:
                    raise BadRequest(f"The url {line.get('url')!r} does not match the batch endpoint "
                                     f"{batch.endpoint!r}.", "url")
                prompt = validate_body(batch.endpoint, line.get("body"))
            except (BadRequest, ValueError) as e:
                batch.errors.append({"code": "invalid_request", "message": str(e), "line": i,
                                     "param": getattr(e, "param", None)})
                continue
            batch.lines.append(line)
            with self.lock:
                batch.outcomes.append(take_rule(self.batch_rules, prompt) or "ok")
        if not batch.lines and not batch.errors:
            batch.errors.append({"code": "empty_file", "message": "The input file is empty.", "line": None,
                                 "param": None})
        with self.lock:
            self.batches[batch.id] = batch
        return Reply.json(200, self.batch_json(batch))

    def _refresh(self, batch: Batch) -> str:
        """The batch's status now; ends it (writing its output files) when its time has come."""
        if batch.finished is not None:
            return batch.finished["status"]
        t = now_s()
        if t - batch.created < batch.validating_s:
            return "validating"
        if batch.errors:
            batch.finished = {"status": "failed", "failed_at": t}
            return "failed"
        if batch.cancelled_at is not None:
            return self._finish(batch, "cancelled", t, cancelled=True)
        if t - batch.created < batch.validating_s + batch.processing_s:
            return "in_progress"
        return self._finish(batch, "expired" if "expired" in batch.outcomes else "completed", t)

    def _finish(self, batch: Batch, status: str, t: float, cancelled: bool = False) -> str:
        out, err = [], []
        for line, outcome in zip(batch.lines, batch.outcomes):
            rid = self._new_id("batch_req")
            if cancelled:
                continue
            if outcome == "ok":
                out.append({"id": rid, "custom_id": line["custom_id"], "error": None, "response": {
                    "status_code": 200, "request_id": self._new_id("req"),
                    "body": self.completion(batch.endpoint, line["body"])}})
            elif outcome.startswith("failed:"):
                code = int(outcome.split(":", 1)[1])
                err.append({"id": rid, "custom_id": line["custom_id"], "error": None, "response": {
                    "status_code": code, "request_id": self._new_id("req"),
                    "body": self.error_body(code, f"injected item failure ({code})")}})
            else:
                err.append({"id": rid, "custom_id": line["custom_id"], "response": None, "error": {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired."}})
        out.reverse()  # output order is not the input order; clients must match on custom_id
        finished: dict[str, Any] = {"status": status, "completed": len(out), "failed": len(err),
                                    "output_file_id": None, "error_file_id": None}
        if out:
            finished["output_file_id"] = self._store_file(
                f"{batch.id}_output.jsonl", _jsonl(out), "batch_output")["id"]
        if err:
            finished["error_file_id"] = self._store_file(
                f"{batch.id}_error.jsonl", _jsonl(err), "batch_output")["id"]
        finished[{"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[status]] = t
        batch.finished = finished
        return status

    def batch_json(self, batch: Batch) -> dict[str, Any]:
        with self.lock:
            status = self._refresh(batch)
            fin = batch.finished or {}
            n = len(batch.lines)
            return {
                "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "errors":
                    {"object": "list", "data": batch.errors} if batch.errors else None,
                "input_file_id": batch.input_file_id, "completion_window": "24h", "status": status,
                "output_file_id": fin.get("output_file_id"), "error_file_id": fin.get("error_file_id"),
                "created_at": int(batch.created),
                "in_progress_at": int(batch.created + batch.validating_s) if status != "validating" else None,
                "expires_at": int(batch.created + 86400), "finalizing_at": None,
                "completed_at": _int(fin.get("completed_at")), "failed_at": _int(fin.get("failed_at")),
                "expired_at": _int(fin.get("expired_at")), "cancelling_at": _int(batch.cancelled_at),
                "cancelled_at": _int(fin.get("cancelled_at")),
                "request_counts": {"total": n, "completed": fin.get("completed", 0), "failed": fin.get("failed", 0)},
                "metadata": batch.metadata,
            }


def _int(t: float | None) -> int | None:
    return None if t is None else int(t)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c or [] if isinstance(p, dict))
    return ""


def validate_body(endpoint: str, body: Any) -> str:
    """Check a completions body like the API does; return the prompt text the answer is made from."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("you must provide a model parameter", "model")
    t = body.get("temperature")
    if t is not None and not 0 <= t <= 2:
        raise BadRequest(f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, got {t}.",
                         "temperature")
    for key in ("max_tokens", "max_completion_tokens"):
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or v < 1):
            raise BadRequest(f"Invalid '{key}': integer below minimum value. Expected a value >= 1.", key)
    if body.get("stream"):
        raise BadRequest("stream is not supported by this test server", "stream")
    if endpoint == "/v1/chat/completions":
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise BadRequest("Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in {"system", "developer", "user", "assistant", "tool"}:
                raise BadRequest(f"Invalid value for 'messages[{i}].role'.", f"messages[{i}].role")
        return last_user_text(msgs)
    if not isinstance(body.get("prompt"), str):
        raise BadRequest("Missing required parameter: 'prompt'.", "prompt")
    return body["prompt"]
