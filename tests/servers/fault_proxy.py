"""A loopback HTTP proxy that injects faults in front of an OpenAI-compatible server.

For a configurable share of requests it answers 429 with `Retry-After`, 500, a 200 whose JSON
body is cut in half, or stalls (sleeps, then answers 504) so the client times out first. Each distinct
request body is faulted at most `max_faults_per_body` times, so a client that retries enough
always gets through. Faults follow a schedule of 20 slots (each fault gets round(rate x 20) of them,
shuffled with the seed) repeated over the requests, so every configured fault shows up within the
first 20 requests and the shares hold exactly.
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
SLOTS = 20


@dataclass
class FaultPlan:
    """Share of requests (0..1, in steps of 0.05) that get each fault; the rest pass through untouched."""

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
        rates = (plan.rate_429, plan.rate_500, plan.rate_truncated, plan.rate_stall)
        schedule: list[str | None] = [f for f, r in zip(FAULTS, rates) for _ in range(round(r * SLOTS))]
        schedule += [None] * (SLOTS - len(schedule))
        random.Random(plan.seed).shuffle(schedule)
        self._schedule = schedule
        self._count = 0
        self._mutex = threading.Lock()

    def _choose(self, body: bytes) -> str | None:
        with self._mutex:
            fault = self._schedule[self._count % SLOTS]
            self._count += 1
            key = hashlib.sha256(body).hexdigest()
            if fault is None or self._per_body[key] >= self.plan.max_faults_per_body:
                return None
            self._per_body[key] += 1
            self.faults[fault] += 1
            return fault

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
