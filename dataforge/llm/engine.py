"""Running LLM requests for a step: answers from the call log first, the rest with bounded concurrency,
rate limits, retries, a per-build budget, every attempt logged as it happens.

One entry point: `session(cfg, ctx)` opens the provider, the call log and one progress bar once;
`Session.run(requests)` answers a list of requests (in order, a `Completion` or a `CallFailure` each)
and may be called round after round. `run_requests` is a session of one round.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Iterator

from dataforge.errors import BudgetExceeded, UserError
from dataforge.llm.calllog import CallLog, call_row, completion_from_row
from dataforge.llm.config import LLMConfig
from dataforge.llm.context import LLMContext, llm_context
from dataforge.llm.limits import RateLimiter, backoff_delay, estimate_tokens
from dataforge.llm.pricing import cost_at, price
from dataforge.llm.providers import Provider, ProviderError, make_provider
from dataforge.llm.types import CallFailure, Completion, Request

if TYPE_CHECKING:
    from dataforge.steps.base import RunContext

Result = Completion | CallFailure
@dataclass
class RunStats:
    """What a session did, over all its rounds (also logged as a summary line)."""

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
    stopped_by: str | None = None
    """The limit (`max_calls` | `budget_usd`) that stopped admitting calls, if one did."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def stop_reason(self) -> str | None:
        """Why calls stopped, with the build's calls and spend as they stand now (calls in flight when
        the limit was reached add theirs as they settle)."""
        return limit_reached(self.cfg, self.stopped_by, self.calls, self.spent) if self.stopped_by else None

    def admit(self, worst_usd: float) -> bool:
        if self.stopped_by:
            return False
        if self.cfg.max_calls is not None and self.calls >= self.cfg.max_calls:
            self.stopped_by = "max_calls"
            return False
        if self.cfg.budget_usd is not None and self.spent + self.reserved + worst_usd > self.cfg.budget_usd:
            self.stopped_by = "budget_usd"
            return False
        self.calls += 1
        self.reserved += worst_usd
        return True

    def settle(self, worst_usd: float, actual_usd: float) -> None:
        self.reserved -= worst_usd
        self.spent += actual_usd


def limit_reached(cfg: LLMConfig, limit: str, calls: int, spent: float) -> str:
    """Why a build stopped calling: `limit` (`max_calls` | `budget_usd`) with the build's calls or spend so far."""
    if limit == "max_calls":
        return f"llm.max_calls={cfg.max_calls} reached ({calls} calls in this build)"
    over = ("; calls already sent cost more than their estimate (prompt characters / 4 plus max_tokens), "
            "so the spend ran past the budget") if spent > cfg.budget_usd else ""
    return f"llm.budget_usd={cfg.budget_usd:g} reached (${spent:.4f} spent in this build{over})"


def run_requests(requests: list[Request], cfg: LLMConfig, ctx: "LLMContext | RunContext", *,
                 desc: str | None = None, provider: Provider | None = None) -> list[Result]:
    """Answer every request, in order: from the call log when answered before, else from the provider.

    Raises `UserError` when the provider refuses the credentials or model (401/403/404) or when every
    call failed; returns `CallFailure(status="skipped")` for requests the budget stopped (see
    `raise_if_stopped`). Ctrl-C stops cleanly: finished calls are committed before it propagates.
    """
    results, _ = run_requests_with_stats(requests, cfg, ctx, desc=desc, provider=provider)
    return results


def run_requests_with_stats(requests: list[Request], cfg: LLMConfig, ctx: "LLMContext | RunContext", *,
                            desc: str | None = None, provider: Provider | None = None
                            ) -> tuple[list[Result], RunStats]:
    """`run_requests` that also returns what it did."""
    with session(cfg, ctx, desc=desc, provider=provider) as s:
        results = s.run(requests)
    return results, s.stats


@contextmanager
def session(cfg: LLMConfig, ctx: "LLMContext | RunContext", *, desc: str | None = None,
            provider: Provider | None = None) -> Iterator["Session"]:
    """A `Session` for one step: `with session(cfg, ctx) as s: s.run(round_1); s.run(round_2)`.

    The provider is opened on the first request that needs a call (never when the call log answers
    everything) and closed on exit, with the call log flushed; a passed `provider` is not closed.
    """
    s = Session(cfg, llm_context(ctx), desc=desc, provider=provider)
    try:
        yield s
    finally:
        s.close()


class Session:
    """Answers rounds of requests with one provider, one call log and one progress bar.

    `stats` adds up every round; the summary line is logged when the session closes.
    """

    def __init__(self, cfg: LLMConfig, ctx: LLMContext, *, desc: str | None = None,
                 provider: Provider | None = None):
        self.cfg = cfg
        self.ctx = ctx
        self.desc = desc or f"{ctx.step_id} llm"
        self.stats = RunStats()
        self._provider = provider
        self._own_provider = provider is None
        self._calllog: CallLog | None = None
        self._limiter: RateLimiter | None = None
        self._task: Any = None
        self._loop = _LoopHost()
        self._priced_note = False
        self._closed = False
        self._rounds = 0
        self._answered: set[str] = set()  # request hashes this session got an answer for
        self._index: _AnsweredIndex | None = None

    def run(self, requests: list[Request]) -> list[Result]:
        """Answer `requests` in order (see `run_requests` for errors); callable once per round."""
        if self._closed:
            raise RuntimeError("session is closed")
        t0 = time.perf_counter()
        hashes = [r.hash() for r in requests]
        store = self.ctx.store
        answers: dict[str, Result] = {}
        if store is not None and hashes:
            wanted = set(hashes)
            if self._rounds:  # from the second round on, ask the log only for hashes it may hold
                if self._index is None or self._index.stale():
                    self._index = _AnsweredIndex(store.answered_hash_prefixes(), self._answered)
                ask = self._index.maybe(wanted)
            else:
                ask = wanted
            found = store.cached_llm_responses(sorted(ask)) if ask else {}
            if self._calllog is not None:  # this session's answers the background commit has not written yet
                found |= self._calllog.uncommitted_ok(wanted - found.keys())
            for h, row in found.items():
                answers[h] = completion_from_row(row)
        self._rounds += 1
        todo: dict[str, Request] = {}
        for h, r in zip(hashes, requests):
            if h not in answers and h not in todo:
                todo[h] = r
        cached = sum(1 for h in hashes if h in answers)
        if store is not None and answers:
            # One `cached` row per answered request, so `dataforge calls` shows what each build took from the log.
            seen = {h: r for h, r in zip(hashes, requests) if h in answers}
            store.record_llm_calls(call_row(r, build_id=self.ctx.build_id, step_id=self.ctx.step_id,
                                            status="cached", request_hash=h, keep_prompt=False)
                                   for h, r in seen.items())
        before = (self.stats.called, self.stats.ok, self.stats.failed)
        self.stats.requests += len(requests)
        self.stats.cached += cached
        self._bar(len(requests), cached)
        try:
            if todo:
                if price(self.cfg) is None and not self._priced_note:
                    self._priced_note = True
                    self.ctx.log(f"  note: no price known for model {self.cfg.model!r}; its calls count as $0 "
                                 "(set llm.prices to enforce llm.budget_usd)")
                self._loop.run(lambda: self._call_all(todo, answers))
        finally:
            self.stats.seconds += time.perf_counter() - t0
        called, ok, failed = (a - b for a, b in zip((self.stats.called, self.stats.ok, self.stats.failed), before))
        if called and not ok and not cached and failed:
            first = next(a for a in answers.values() if isinstance(a, CallFailure) and a.status == "error")
            raise UserError(f"every LLM call failed ({failed} of {called}); first error: {first.error}")
        return [answers[h] for h in hashes]

    def close(self) -> None:
        """Flush the call log, close the provider (if the session opened it) and log the summary."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._aclose)
        finally:
            self._loop.close()
            if self._task is not None:
                self._task.close()
        if self.ctx.summary and (self.stats.called or self.stats.cached):
            self.ctx.log(summary_line(self.ctx.step_id, self.stats))

    # -- internals ----------------------------------------------------------------
    def _bar(self, n: int, cached: int) -> None:
        if self.ctx.progress is None or not n:
            return
        if self._task is None:
            self._task = self.ctx.progress.task(self.desc, total=n)
        else:
            self._task.set_total(self.stats.requests)
        if cached:
            self._task.advance(cached)

    async def _aclose(self) -> None:
        if self._calllog is not None:
            await self._calllog.close()
        if self._own_provider and self._provider is not None:
            await self._provider.aclose()

    async def _call_all(self, todo: dict[str, Request], answers: dict[str, Result]) -> None:
        if self._provider is None:
            self._provider = make_provider(self.cfg, self.ctx.resolve)
        if self._calllog is None:
            self._calllog = CallLog(self.ctx.store)
            self._calllog.start()
            self._limiter = RateLimiter(self.cfg.requests_per_minute, self.cfg.tokens_per_minute)
        # A budget counts the build's calls from the log, so with one every round's answers are committed
        # before the next round starts. Without one the call log's background task commits them (within its
        # interval): a round then costs no catalog write of its own, which matters for many short rounds.
        limited = self.cfg.max_calls is not None or self.cfg.budget_usd is not None
        calls, spent = self.ctx.store.llm_usage(self.ctx.build_id) \
            if self.ctx.store is not None and limited else (0, 0.0)
        rnd = _Round(self, todo, answers, Budget(self.cfg, calls, spent))
        try:
            await rnd.run()
        finally:
            if limited:
                await self._calllog.flush()
        if rnd.fatal is not None:
            raise UserError(f"llm provider {self.cfg.provider!r} refused the request ({rnd.fatal}); "
                            "check llm.model, llm.base_url and the API key variable")


class _AnsweredIndex:
    """Which request hashes the call log may hold: the 16-character prefixes of its `ok` hashes when it was
    read, plus every hash answered in this session (`own`). A multi-round session reads it once (again after
    `REFRESH_S`, for answers other processes logged meanwhile) instead of querying the catalog every round;
    a hash it rules out was not in the log when read, and a hash it admits is looked up exactly."""

    REFRESH_S = 30.0

    def __init__(self, prefixes: Any, own: set[str]):
        self.prefixes = prefixes
        self.own = own
        self.read_at = time.monotonic()

    def stale(self) -> bool:
        return time.monotonic() - self.read_at > self.REFRESH_S

    def maybe(self, hashes: set[str]) -> set[str]:
        import numpy as np

        hs = sorted(hashes - self.own)
        if not hs or not len(self.prefixes):
            return hashes & self.own
        keys = np.array([h[:16] for h in hs], dtype="S16")
        pos = np.minimum(np.searchsorted(self.prefixes, keys), len(self.prefixes) - 1)
        hit = self.prefixes[pos] == keys
        return {h for h, m in zip(hs, hit.tolist()) if m} | (hashes & self.own)


class _LoopHost:
    """One event loop kept across rounds (the call log's task and the provider's client live in it).

    Runs in this thread; when this thread already runs a loop (a notebook), in a worker thread.
    """

    def __init__(self) -> None:
        try:
            asyncio.get_running_loop()
            self._pool: concurrent.futures.ThreadPoolExecutor | None = concurrent.futures.ThreadPoolExecutor(1)
        except RuntimeError:
            self._pool = None
        self._runner: asyncio.Runner | None = None

    def run(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._pool is None:
            self._get().run(make())
        else:
            self._pool.submit(lambda: self._get().run(make())).result()

    def _get(self) -> asyncio.Runner:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner

    def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            if self._pool is None:
                runner.close()
            else:
                self._pool.submit(runner.close).result()
        if self._pool is not None:
            self._pool.shutdown()


class _Round:
    """One `Session.run`'s calls: workers over a queue, the budget, retries, the call log."""

    def __init__(self, s: Session, todo: dict[str, Request], answers: dict[str, Result], budget: Budget):
        self.s = s
        self.cfg = s.cfg
        self.todo = todo
        self.answers = answers
        self.stats = s.stats
        self.budget = budget
        self.build_id = s.ctx.build_id
        self.step_id = s.ctx.step_id
        self.calllog: CallLog = s._calllog  # type: ignore[assignment]
        self.limiter: RateLimiter = s._limiter  # type: ignore[assignment]
        self.fatal: ProviderError | None = None
        self.started = time.perf_counter()
        self.done = 0
        self._shown = 0  # answers counted on the progress bar so far
        self._shown_at = 0.0
        self._prices: dict[str, tuple[float, float] | None] = {}

    def _cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        """`cost_usd` with the price looked up once per model and round (it was a prefix scan per call)."""
        if model not in self._prices:
            self._prices[model] = price(self.cfg, model)
        return cost_at(self._prices[model], input_tokens, output_tokens)

    async def run(self) -> None:
        provider = self.s._provider
        assert provider is not None
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
            self._show(time.perf_counter())
        if self.budget.stopped_by:  # say what the build spent once every call sent has settled
            reason = self.budget.stop_reason
            self.stats.stop_reason = reason
            for h, a in self.answers.items():
                if h in self.todo and isinstance(a, CallFailure) and a.status == "skipped":
                    self.answers[h] = CallFailure(error=reason or "budget reached", status="skipped")

    async def _worker(self, provider: Provider, queue: asyncio.Queue) -> None:
        while not queue.empty() and self.fatal is None:
            h, r = queue.get_nowait()
            self.answers[h] = await self._one(provider, h, r)

    async def _one(self, provider: Provider, h: str, r: Request) -> Result:
        text = r.prompt_text()
        est_in = estimate_tokens(text)
        worst = self._cost(r.model, est_in, r.max_tokens)
        if not self.budget.admit(worst):
            self.stats.skipped += 1
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
                                              status="error" if last else "retry", error=str(e), latency_ms=ms,
                                              prompt_text=text))
                    if e.fatal:
                        self.fatal = e
                    if last:
                        self.stats.failed += 1
                        self._advance()
                        return CallFailure(error=str(e), status="error")
                    self.stats.retries += 1
                    await asyncio.sleep(backoff_delay(attempt, self.cfg.retry_backoff_s, e.retry_after))
                    continue
                actual = self._cost(r.model, c.input_tokens, c.output_tokens)
                self.calllog.add(call_row(r, build_id=self.build_id, step_id=self.step_id, request_hash=h,
                                          status="ok", completion=c, cost_usd=actual, prompt_text=text))
                self.stats.ok += 1
                self.s._answered.add(h)
                self.stats.input_tokens += c.input_tokens
                self.stats.output_tokens += c.output_tokens
                self.stats.usd += actual
                self._advance()
                return c
            raise AssertionError("unreachable")
        finally:
            self.budget.settle(worst, actual)

    def _advance(self) -> None:
        """Count one answered (or failed) request; the bar is updated at most every `SHOW_S`."""
        self.done += 1
        now = time.perf_counter()
        if now - self._shown_at >= self.SHOW_S:
            self._show(now)

    SHOW_S = 0.1

    def _show(self, now: float) -> None:
        task = self.s._task
        if task is None or self.done == self._shown:
            return
        rate = self.done / max(1e-9, now - self.started)
        task.advance(self.done - self._shown, rate=f"{rate:.1f}/s",
                     tokens=f"{self.stats.input_tokens + self.stats.output_tokens:,}", usd=f"${self.stats.usd:.4f}")
        self._shown, self._shown_at = self.done, now


def summary_line(step_id: str, st: RunStats) -> str:
    """The build log's line about a step's LLM calls."""
    cut = st.called - st.ok - st.failed  # sent, then stopped before an answer (Ctrl-C, a fatal error)
    return (f"  {step_id}: {st.requests} requests, {st.cached} from the call log, "
            f"{st.called} called ({st.ok} ok, {st.failed} failed, {st.retries} retries"
            f"{f', {cut} stopped unanswered' if cut else ''}"
            f"{f', {st.skipped} not sent' if st.skipped else ''}), "
            f"{st.input_tokens + st.output_tokens:,} tokens, ${st.usd:.4f}")


def raise_if_stopped(results: list[Result]) -> None:
    """Raise `BudgetExceeded` (with how to continue) when the budget left requests unsent."""
    skipped = [r for r in results if isinstance(r, CallFailure) and r.status == "skipped"]
    if skipped:
        raise budget_stop(skipped[0].error, len(skipped), len(results))


def budget_stop(reason: str, skipped: int, requests: int) -> BudgetExceeded:
    """The error of a build that stopped on `reason` (see `limit_reached`) with `skipped` of `requests` unsent."""
    return BudgetExceeded(
        f"{reason}; {skipped} of {requests} requests were not sent. Every answer already paid for is kept in "
        "the call log (see `dataforge calls`). To continue, run `dataforge build` again: answered requests are "
        "read back from the log at no cost, and each build may spend up to the budget (raise llm.budget_usd or "
        "llm.max_calls to finish in one build).")


