"""A loopback HTTP proxy that injects faults in front of an OpenAI-compatible server.

For a configurable share of requests it answers 429 with `Retry-After`, 500, a 200 whose JSON
body is cut in half, or stalls (sleeps, then answers 504) so the client times out first. Each distinct
request body is faulted at most `max_faults_per_body` times, so a client that retries enough
always gets through. The fault sequence is drawn from a seeded generator: runs repeat.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass

from servers._http import LoopbackServer, Reply, Req

FAULTS = ("429", "500", "truncated", "stall")


@dataclass
class FaultPlan:
    """Share of requests (0..1) that get each fault; the rest pass through untouched."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_truncated: float = 0.0
    rate_stall: float = 0.0
    retry_after_s: float = 0.2
    stall_s: float = 3.0
    max_faults_per_body: int = 2
    seed: int = 0


class FaultProxy(LoopbackServer):
    """`FaultProxy(upstream_url, FaultPlan(...))`; `faults` counts what was injected, `passed` what went through."""

    def __init__(self, upstream: str, plan: FaultPlan, latency_s: float = 0.0):
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.plan = plan
        self.latency_s = latency_s
        self.faults: Counter[str] = Counter()
        self.passed = 0
        self._per_body: Counter[str] = Counter()
        self._rng = random.Random(plan.seed)
        self._mutex = threading.Lock()

    def _choose(self, body: bytes) -> str | None:
        p = self.plan
        with self._mutex:
            x = self._rng.random()
            key = hashlib.sha256(body).hexdigest()
            if self._per_body[key] >= p.max_faults_per_body:
                return None
            edge = 0.0
            for name, rate in zip(FAULTS, (p.rate_429, p.rate_500, p.rate_truncated, p.rate_stall)):
                edge += rate
                if x < edge:
                    self._per_body[key] += 1
                    self.faults[name] += 1
                    return name
            return None

    def _forward(self, req: Req) -> Reply:
        headers = {k: v for k, v in req.headers.items() if k in ("content-type", "authorization", "accept")}
        up = urllib.request.Request(self.upstream + req.path, data=req.body or None, method=req.method,
                                    headers=headers)
        try:
            with urllib.request.urlopen(up, timeout=120) as resp:
                return Reply(resp.status, resp.read(), {"content-type": resp.headers.get("content-type", "")})
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read(), {"content-type": e.headers.get("content-type", "")})

    def route(self, req: Req) -> Reply:
        if self.latency_s:
            time.sleep(self.latency_s)
        fault = self._choose(req.body) if req.method == "POST" else None
        if fault == "429":
            return Reply.json(429, {"error": {"message": "Rate limit reached, slow down", "type": "requests",
                                              "code": "rate_limit_exceeded"}},
                              **{"retry-after": f"{self.plan.retry_after_s:g}"})
        if fault == "500":
            return Reply.json(500, {"error": {"message": "The server had an error", "type": "server_error"}})
        if fault == "stall":  # the client should have given up by now; don't load the upstream server
            time.sleep(self.plan.stall_s)
            return Reply.json(504, {"error": {"message": "stalled", "type": "server_error"}})
        reply = self._forward(req)
        if fault == "truncated" and reply.status == 200:
            reply = Reply(200, reply.body[: len(reply.body) // 2], reply.headers)
        with self._mutex:
            self.passed += fault is None
        return reply
