"""A loopback OpenAI-compatible server whose answers come from a Python function, for generator tests.

`ScriptedOpenAI(answer)` serves `POST /v1/completions` and `POST /v1/chat/completions`;
`answer(prompt_text, body)` returns the text, or `(text, finish_reason)`. The prompt text is the
completion prompt or the last user message. `stop` sequences are honoured (the text is cut at the
first one, finish_reason "stop"), usage counts words. Every body is kept in `bodies`.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable

from servers._http import LoopbackServer, Reply, Req, n_tokens

Answer = Callable[[str, dict[str, Any]], "str | tuple[str, str]"]


class ScriptedOpenAI(LoopbackServer):
    def __init__(self, answer: Answer):
        super().__init__()
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def route(self, req: Req) -> Reply:
        if req.method != "POST" or req.path not in ("/v1/completions", "/v1/chat/completions"):
            return Reply.json(404, {"error": {"message": f"no route {req.method} {req.path}",
                                              "type": "invalid_request_error"}})
        body = req.json()
        with self._lock:
            self.bodies.append(body)
        chat = req.path.endswith("chat/completions")
        prompt = ([m["content"] for m in body["messages"] if m["role"] == "user"] or [""])[-1] if chat \
            else body["prompt"]
        out = self.answer(prompt, body)
        text, finish = (out, "stop") if isinstance(out, str) else out
        for s in body.get("stop") or []:
            if s in text:
                text, finish = text[: text.index(s)], "stop"
        usage = {"prompt_tokens": n_tokens(prompt), "completion_tokens": n_tokens(text),
                 "total_tokens": n_tokens(prompt) + n_tokens(text)}
        rid = f"cmpl-{next(self._ids)}"
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            return Reply.json(200, {"id": rid, "object": "chat.completion", "created": 0, "model": body["model"],
                                    "choices": [choice], "usage": usage})
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return Reply.json(200, {"id": rid, "object": "text_completion", "created": 0, "model": body["model"],
                                "choices": [choice], "usage": usage})

    def prompts(self, contains: str = "") -> list[str]:
        """Completion prompts / last user messages received, optionally only those containing `contains`."""
        with self._lock:
            out = []
            for b in self.bodies:
                p = b.get("prompt") if "prompt" in b else [m["content"] for m in b["messages"]
                                                          if m["role"] == "user"][-1]
                if contains in p:
                    out.append(p)
            return out
