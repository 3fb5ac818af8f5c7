"""Scaffolding shared by the loopback API servers: a threaded stdlib HTTP server on 127.0.0.1.

A server subclasses `LoopbackServer` and implements `route(req) -> Reply`. Every request is
recorded in `server.log` so tests can assert what the client sent (and how often).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Req:
    """One received request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, tuple[str | None, bytes]]:
        """A multipart/form-data body as name -> (filename, bytes)."""
        head = f"Content-Type: {self.headers.get('content-type', '')}\r\n\r\n".encode()
        msg = BytesParser(policy=HTTP).parsebytes(head + self.body)
        out: dict[str, tuple[str | None, bytes]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            out[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        return out


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, **headers: str) -> "Reply":
        return cls(status, json.dumps(obj).encode(), {"content-type": "application/json", **headers})


class LoopbackServer:
    """Base class: start with `with Server() as s:` (or `start()`/`stop()`); `s.url` is the base URL."""

    def __init__(self) -> None:
        self.log: list[Req] = []
        self.lock = threading.RLock()
        self.faults: list[Any] = []  # queued faults, each with a `times` countdown
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Req(self.command, parts.path, parse_qs(parts.query),
                          {k.lower(): v for k, v in self.headers.items()}, body)
                with owner.lock:
                    owner.log.append(req)
                try:
                    reply = owner.route(req)
                except Exception as e:  # a bug in the fake server must show up in the test, not hang it
                    reply = Reply.json(500, {"error": f"test server crashed: {e!r}"})
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def route(self, req: Req) -> Reply:
        raise NotImplementedError

    def _take_fault(self) -> Any | None:
        """The first queued fault with uses left (one use taken), or None."""
        with self.lock:
            for f in self.faults:
                if f.times > 0:
                    f.times -= 1
                    return f
        return None

    def count(self, method: str, path_prefix: str) -> int:
        """How many requests with this method had a path starting with `path_prefix`."""
        with self.lock:
            return sum(1 for r in self.log if r.method == method and r.path.startswith(path_prefix))

    def requests_to(self, method: str, path: str) -> list[Req]:
        with self.lock:
            return [r for r in self.log if r.method == method and r.path == path]


@dataclass
class ItemRule:
    """Make items whose prompt contains `marker` end as `outcome`, the next `times` times they are seen."""

    marker: str
    outcome: str
    times: int = 1


def take_rule(rules: list[ItemRule], text: str) -> str | None:
    """The outcome of the first live rule matching `text` (using it up once), else None."""
    for rule in rules:
        if rule.times > 0 and rule.marker in text:
            rule.times -= 1
            return rule.outcome
    return None


def reply_text(prompt: str, max_tokens: int) -> tuple[str, bool]:
    """The deterministic answer both servers give: `ECHO:` + the prompt's words upper-cased.

    Returns (text, truncated); one word counts as one token, and the answer is cut at `max_tokens`.
    """
    words = ["ECHO:"] + prompt.upper().split()
    return " ".join(words[:max_tokens]), len(words) > max_tokens


def n_tokens(text: str) -> int:
    return len(text.split())


def now_s() -> float:
    return time.time()
