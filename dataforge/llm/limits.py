"""Client-side rate limits: token buckets for requests/min and tokens/min, and retry delays."""

from __future__ import annotations

import asyncio
import random
import time


class Bucket:
    """A token bucket holding up to one minute of allowance, refilled continuously."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = per_minute
        self.level = per_minute
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` is available (0 when it is now); an amount above capacity waits for a full bucket."""
        self._refill()
        amount = min(amount, self.capacity)
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= min(amount, self.capacity)


class RateLimiter:
    """Requests/min and tokens/min limits shared by every worker of one run."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.requests = Bucket(requests_per_minute) if requests_per_minute else None
        self.tokens = Bucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about `tokens` tokens fits both limits, then take it."""
        if self.requests is None and self.tokens is None:
            return
        async with self._lock:  # first come, first served
            while True:
                wait = max(self.requests.wait_time(1) if self.requests else 0.0,
                           self.tokens.wait_time(tokens) if self.tokens else 0.0)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)


def backoff_delay(attempt: int, base_s: float, retry_after: float | None, cap_s: float = 60.0) -> float:
    """Delay before retry number `attempt` (0-based): the server's Retry-After when given, else
    exponential backoff with equal jitter (half fixed, half random) so clients don't retry in lockstep."""
    if retry_after is not None:
        return retry_after + random.uniform(0, 0.1 * max(retry_after, 0.1))
    d = min(cap_s, base_s * (2 ** attempt))
    return d / 2 + random.uniform(0, d / 2)


def estimate_tokens(text: str) -> int:
    """Rough prompt size (about 4 characters a token), for limits and budget reservations before a call."""
    return len(text) // 4 + 1
