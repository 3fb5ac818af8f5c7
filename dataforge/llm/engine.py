"""Running LLM requests for a step: answers from the call log first, the rest with bounded concurrency,
rate limits, retries, a per-build budget, every attempt logged as it happens.

`run_requests` is the one entry point generator steps use; it returns, in request order,
a `Completion` or a `CallFailure` for each request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dataforge.errors import BudgetExceeded, UserError
from dataforge.llm.calllog import CallLog, call_row, completion_from_row
from dataforge.llm.config import LLMConfig
from dataforge.llm.limits import RateLimiter, backoff_delay, estimate_tokens
from dataforge.llm.pricing import cost_usd, price
from dataforge.llm.providers import Provider, ProviderError, make_provider
from dataforge.llm.types import CallFailure, Completion, Request

Result = Completion | CallFailure


@dataclass
class RunStats:
    """What one `run_requests` call did (also logged as a summary line)."""

    requests: int = 0
    cached: int = 0
    called: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    stop_reason: str | None = None
    seconds: float = 0.0


@dataclass
class Budget:
    """Per-build spend; a call is sent only if its worst-case cost still fits the budget."""

    cfg: LLMConfig
    calls: int
    spent: float
    reserved: float = 0.0
    stop_reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, worst_usd: float) -> bool:
        if self.stop_reason:
            return False
        if self.cfg.max_calls is not None and self.calls >= self.cfg.max_calls:
            self.stop_reason = f"llm.max_calls={self.cfg.max_calls} reached ({self.calls} calls in this build)"
            return False
        if self.cfg.budget_usd is not None and self.spent + self.reserved + worst_usd > self.cfg.budget_usd:
            self.stop_reason = (f"llm.budget_usd={self.cfg.budget_usd:g} reached "
                                f"(${self.spent:.4f} spent in this build)")
            return False
        self.calls += 1
        self.reserved += worst_usd
        return True

    def settle(self, worst_usd: float, actual_usd: float) -> None:
        self.reserved -= worst_usd
        self.spent += actual_usd


def run_requests(requests: list[Request], cfg: LLMConfig, ctx: Any, *, desc: str | None = None,
                 provider: Provider | None = None) -> list[Result]:
    """Answer every request, in order: from the call log when answered before, else from the provider.

    Raises `UserError` when the provider refuses the credentials or model (401/403/404) or when every
    call failed; returns `CallFailure(status="skipped")` for requests the budget stopped (see
    `raise_if_stopped`). Ctrl-C stops cleanly: finished calls are committed before it propagates.
    """
    results, _ = run_requests_with_stats(requests, cfg, ctx, desc=desc, provider=provider)
    return results


def run_requests_with_stats(requests: list[Request], cfg: LLMConfig, ctx: Any, *, desc: str | None = None,
                            provider: Provider | None = None) -> tuple[list[Result], RunStats]:
    """`run_requests` that also returns what it did."""
    t0 = time.perf_counter()
    stats = RunStats(requests=len(requests))
    hashes = [r.hash() for r in requests]
    catalog = getattr(ctx, "catalog", None)
    log = getattr(ctx, "log", print)
    answers: dict[str, Result] = {}
    if catalog is not None:
        for h, row in catalog.cached_llm_responses(sorted(set(hashes))).items():
            answers[h] = completion_from_row(row)
    todo: dict[str, Request] = {}
    for h, r in zip(hashes, requests):
        if h not in answers and h not in todo:
            todo[h] = r
    stats.cached = sum(1 for h in hashes if h in answers)
    if catalog is not None and answers:
        # One `cached` row per answered request, so `dataforge calls` shows what each build took from the log.
        build_id, step_id = getattr(ctx, "build_id", "") or "", getattr(ctx, "step_id", "") or ""
        seen = {h: r for h, r in zip(hashes, requests) if h in answers}
        catalog.record_llm_calls(call_row(r, build_id=build_id, step_id=step_id, status="cached", request_hash=h,
                                          keep_prompt=False) for h, r in seen.items())

    task = None
    if getattr(ctx, "progress", None) is not None and requests:
        task = ctx.progress.task(desc or f"{getattr(ctx, 'step_id', '')} llm", total=len(requests))
        if stats.cached:
            task.advance(stats.cached, tokens="0", usd="$0.0000")
    try:
        if todo:
            if price(cfg) is None:
                log(f"  note: no price known for model {cfg.model!r}; its calls count as $0 "
                    "(set llm.prices to enforce llm.budget_usd)")
            _run_async(_Runner(cfg, ctx, todo, answers, stats, task, provider).run())
    finally:
        if task is not None:
            task.close()
    stats.seconds = time.perf_counter() - t0
    if stats.called or stats.cached:
        log(f"  {getattr(ctx, 'step_id', '')}: {stats.requests} requests, {stats.cached} from the call log, "
            f"{stats.called} called ({stats.ok} ok, {stats.failed} failed, {stats.retries} retries"
            f"{f', {stats.skipped} not sent' if stats.skipped else ''}), "
            f"{stats.input_tokens + stats.output_tokens:,} tokens, ${stats.usd:.4f}")
    if stats.called and not stats.ok and not stats.cached and stats.failed:
        first = next(a for a in answers.values() if isinstance(a, CallFailure) and a.status == "error")
        raise UserError(f"every LLM call failed ({stats.failed} of {stats.called}); first error: {first.error}")
    return [answers[h] for h in hashes], stats


def raise_if_stopped(results: list[Result]) -> None:
    """Raise `BudgetExceeded` (with how to continue) when the budget left requests unsent."""
    skipped = [r for r in results if isinstance(r, CallFailure) and r.status == "skipped"]
    if skipped:
        raise BudgetExceeded(
            f"{skipped[0].error}; {len(skipped)} of {len(results)} requests were not sent. Every answer already "
            "paid for is kept in the call log (see `dataforge calls`). To continue, run `dataforge build` again: "
            "answered requests are read back from the log at no cost, and each build may spend up to the budget "
            "(raise llm.budget_usd or llm.max_calls to finish in one build).")


def _run_async(coro) -> None:
    """Run a coroutine to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["e"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]


class _Runner:
    def __init__(self, cfg: LLMConfig, ctx: Any, todo: dict[str, Request], answers: dict[str, Result],
                 stats: RunStats, task: Any, provider: Provider | None):
        self.cfg = cfg
        self.ctx = ctx
        self.todo = todo
        self.answers = answers
        self.stats = stats
        self.task = task
        self.provider = provider
        self.build_id = getattr(ctx, "build_id", "") or ""
        self.step_id = getattr(ctx, "step_id", "") or ""
        catalog = getattr(ctx, "catalog", None)
        calls, spent = catalog.llm_usage(self.build_id) if catalog is not None else (0, 0.0)
        self.budget = Budget(cfg, calls, spent)
        self.fatal: ProviderError | None = None
        self.started = time.perf_counter()

    async def run(self) -> None:
        own = self.provider is None
        provider = self.provider or make_provider(self.cfg, getattr(self.ctx, "resolve", None))
        self.calllog = CallLog(getattr(self.ctx, "catalog", None))
        self.calllog.start()
        self.limiter = RateLimiter(self.cfg.requests_per_minute, self.cfg.tokens_per_minute)
        queue: asyncio.Queue = asyncio.Queue()
        for item in self.todo.items():
            queue.put_nowait(item)
        workers = [asyncio.create_task(self._worker(provider, queue))
                   for _ in range(min(self.cfg.max_concurrency, len(self.todo)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.calllog.close()
            if own:
                await provider.aclose()
        if self.fatal is not None:
            raise UserError(f"llm provider {self.cfg.provider!r} refused the request ({self.fatal}); "
                            "check llm.model, llm.base_url and the API key variable")

    async def _worker(self, provider: Provider, queue: asyncio.Queue) -> None:
        while not queue.empty() and self.fatal is None:
            h, r = queue.get_nowait()
            self.answers[h] = await self._one(provider, h, r)

    async def _one(self, provider: Provider, h: str, r: Request) -> Result:
        est_in = estimate_tokens(r.prompt_text())
        worst = cost_usd(self.cfg, est_in, r.max_tokens, model=r.model)
        if not self.budget.admit(worst):
            self.stats.skipped += 1
            self.stats.stop_reason = self.budget.stop_reason
            return CallFailure(error=self.budget.stop_reason or "budget reached", status="skipped")
        self.stats.called += 1
        actual = 0.0
        try:
            for attempt in range(self.cfg.max_retries + 1):
                await self.limiter.acquire(est_in + r.max_tokens)
                t0 = time.perf_counter()
                try:
                    c = await provider.complete(r)
                except ProviderError as e:
                    ms = (time.perf_counter() - t0) * 1000
                    last = attempt == self.cfg.max_retries or not e.retryable or e.fatal
                    self.calllog.add(call_row(r, build_id=self.build_id, step_id=self.step_id, request_hash=h,
                                              status="error" if last else "retry", error=str(e), latency_ms=ms))
                    if e.fatal:
                        self.fatal = e
                    if last:
                        self.stats.failed += 1
                        self._advance(0, 0)
                        return CallFailure(error=str(e), status="error")
                    self.stats.retries += 1
                    await asyncio.sleep(backoff_delay(attempt, self.cfg.retry_backoff_s, e.retry_after))
                    continue
                actual = cost_usd(self.cfg, c.input_tokens, c.output_tokens, model=r.model)
                self.calllog.add(call_row(r, build_id=self.build_id, step_id=self.step_id, request_hash=h,
                                          status="ok", completion=c, cost_usd=actual))
                self.stats.ok += 1
                self.stats.input_tokens += c.input_tokens
                self.stats.output_tokens += c.output_tokens
                self.stats.usd += actual
                self._advance(c.input_tokens + c.output_tokens, actual)
                return c
            raise AssertionError("unreachable")
        finally:
            self.budget.settle(worst, actual)

    def _advance(self, tokens: int, usd: float) -> None:
        if self.task is not None:
            done = self.stats.ok + self.stats.failed
            rate = done / max(1e-9, time.perf_counter() - self.started)
            self.task.advance(1, rate=f"{rate:.1f}/s", tokens=f"{self.stats.input_tokens + self.stats.output_tokens:,}",
                              usd=f"${self.stats.usd:.4f}")
