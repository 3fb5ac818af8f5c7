"""An OpenAI-compatible loopback server whose answers come from a test's script, for graded generators.

`ScriptedOpenAIServer(script)` answers `POST /v1/chat/completions` and `/v1/completions` (and keeps the
batch API, auth and fault injection of `OpenAIBatchServer`) with `script(prompt, sample)`: `prompt` is the
last user message (or the completion prompt), `sample` is the request's `seed` minus `base_seed` (the
engine sends `seed + sample_index`), so a test can script each sample of each question. A script that
raises `ScriptError(status)` makes that call fail with the HTTP status.
"""

from __future__ import annotations

from typing import Any, Callable

from servers.openai_batch import OpenAIBatchServer, last_user_text
from servers._http import n_tokens, now_s


class ScriptError(Exception):
    def __init__(self, status: int = 500):
        super().__init__(status)
        self.status = status


class ScriptedOpenAIServer(OpenAIBatchServer):
    def __init__(self, script: Callable[[str, int], str], base_seed: int = 0, **kw: Any):
        super().__init__(**kw)
        self.script = script
        self.base_seed = base_seed

    def route(self, req):  # type: ignore[override]
        try:
            return super().route(req)
        except ScriptError as e:
            return self.error(e.status, f"scripted failure {e.status}")

    def completion(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        chat = endpoint == "/v1/chat/completions"
        prompt = last_user_text(body["messages"]) if chat else body["prompt"]
        sample = int(body.get("seed") or 0) - self.base_seed
        text = self.script(prompt, sample)
        in_tokens = n_tokens(prompt)
        usage = {"prompt_tokens": in_tokens, "completion_tokens": n_tokens(text),
                 "total_tokens": in_tokens + n_tokens(text)}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                      "finish_reason": "stop", "logprobs": None}
            return {"id": self._new_id("chatcmpl"), "object": "chat.completion", "created": int(now_s()),
                    "model": body["model"], "choices": [choice], "usage": usage, "system_fingerprint": None}
        return {"id": self._new_id("cmpl"), "object": "text_completion", "created": int(now_s()),
                "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]}
