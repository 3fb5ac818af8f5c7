"""`mode: batch`: answer requests through a provider's batch API (half price), resumable across builds.

`run_batch` answers from the call log first. For the rest it looks in `llm_batches` for batches an
earlier build already submitted for the same request hashes and polls those instead of submitting
again; only requests never submitted (or whose items failed and are worth another try) go into new
batches. A request whose call failed for good in an earlier build is not submitted again unless the
build asks failed calls again (`build --retry-failed`). Every finished batch is logged to `llm_calls`
in the same transaction that marks its items done, so answers are paid once. If the batches are not
done within `llm.batch_wait_s`, the build stops with `BatchPending`; the next `dataforge build` picks
the stored batch ids up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from dataforge.errors import UserError
from dataforge.llm.batch_backends import (INTENT_TAG, BatchAPIError, BatchBackend, BatchNotFound, ItemFailure, endpoint_label,
                                          make_backend)
from dataforge.llm.calllog import call_row, completion_from_row
from dataforge.llm.config import LLMConfig
from dataforge.llm.context import LLMContext, llm_context
from dataforge.llm.engine import Budget
from dataforge.llm.limits import estimate_tokens
from dataforge.llm.pricing import cost_usd, price
from dataforge.llm.types import CallFailure, Completion, Request

if TYPE_CHECKING:
    from dataforge.steps.base import RunContext

Result = Completion | CallFailure
MAX_BATCH_BYTES = 100_000_000
"""Split batches above this much request JSON (Anthropic allows 256 MB per batch, OpenAI 200 MB per file)."""


class BatchPending(UserError):
    """Batches are still running after `llm.batch_wait_s`; their ids are stored and the next build collects them."""


def run_batch(requests: list[Request], cfg: LLMConfig, ctx: "LLMContext | RunContext") -> list[Result]:
    """Answer every request, in order, through the provider's batch API (see the module docstring).

    Returns a `Completion` or a `CallFailure` per request (`status="skipped"` for requests the budget
    kept back, `"error"` for items that failed for good). Raises `BatchPending` when batches are still
    running after `cfg.batch_wait_s`, and `UserError` when the batch API refuses the key or model.
    """
    ctx = llm_context(ctx)
    catalog = ctx.store
    if catalog is None:
        raise UserError("mode: batch needs a catalog to remember submitted batches")
    hashes = [r.hash() for r in requests]
    answers: dict[str, Result] = {h: completion_from_row(row)
                                  for h, row in catalog.cached_llm_responses(sorted(set(hashes))).items()}
    if answers:  # one `cached` row per request answered from the log, as the online engine writes
        seen = {h: r for h, r in zip(hashes, requests) if h in answers}
        catalog.record_llm_calls(call_row(r, build_id=ctx.build_id, step_id=ctx.step_id, status="cached",
                                          request_hash=h, keep_prompt=False) for h, r in seen.items())
    todo: dict[str, Request] = {}
    for h, r in zip(hashes, requests):
        if h not in answers:
            todo.setdefault(h, r)
    if todo:
        _BatchRun(cfg, ctx, todo, answers, total=len(requests), cached=len(requests) - len(todo)).run()
    ok = sum(1 for a in answers.values() if isinstance(a, Completion))
    failed = [a for a in answers.values() if isinstance(a, CallFailure) and a.status == "error"]
    if todo and not ok and failed:
        raise UserError(f"every batch request failed ({len(failed)} of {len(todo)}); last error: {failed[-1].error}")
    return [answers[h] for h in hashes]


class _BatchRun:
    """One `run_batch` call's submissions, polling and collection."""

    def __init__(self, cfg: LLMConfig, ctx: LLMContext, todo: dict[str, Request], answers: dict[str, Result],
                 total: int, cached: int):
        self.cfg = cfg
        self.ctx = ctx
        assert ctx.store is not None
        self.catalog = ctx.store
        self.todo = todo
        self.answers = answers
        self.waiting = set(todo)
        self.attempts: Counter[str] = Counter()
        self.active: set[str] = set()
        self.endpoint = endpoint_label(cfg)
        self.log = ctx.log
        self.task = None
        if ctx.progress is not None:
            self.task = ctx.progress.task(f"{ctx.step_id} batch ({cfg.provider}:{cfg.model})", total=total)
            if cached:
                self.task.advance(cached)
        self.usd = 0.0

    def run(self) -> None:
        backend = make_backend(self.cfg)
        try:
            self._run(backend)
        finally:
            backend.close()
            if self.task is not None:
                self.task.close()

    def _run(self, backend: BatchBackend) -> None:
        self._recover_intents(backend)
        resumed = self.catalog.open_llm_batches(sorted(self.todo), self.cfg.provider, self.endpoint)
        for h, bid in resumed.items():
            self.attempts[h] += 1
            self.active.add(bid)
        if resumed:
            self.log(f"  {self.ctx.step_id}: resuming {len(self.active)} {self.cfg.provider} batch(es) submitted "
                     f"earlier for {len(resumed)} requests: {', '.join(sorted(self.active))}")
        to_submit = self._admit(self._unless_failed([h for h in self.todo if h not in resumed]))
        deadline = time.monotonic() + self.cfg.batch_wait_s
        while True:
            if to_submit:
                self._submit(backend, to_submit)
                to_submit = []
            for bid in sorted(self.active):
                try:
                    if backend.ended(bid):
                        to_submit += self._collect(backend, bid)
                except BatchNotFound as e:
                    to_submit += self._lost(bid, str(e))
            if to_submit:
                continue
            if not self.active:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._pending()
            time.sleep(min(self.cfg.batch_poll_s, left))

    def _unless_failed(self, hashes: list[str]) -> list[str]:
        """The hashes to submit: without `retry_failed`, those whose logged call failed for good in an earlier
        build are answered with that failure, as a plain rebuild reuses a stored step with its failed calls."""
        if self.ctx.retry_failed or not hashes:
            return hashes
        failed = self.catalog.failed_llm_calls(hashes)
        for h in hashes:
            if h in failed:
                self._answer(h, CallFailure(error=failed[h], status="error"))
        if failed:
            self.log(f"  {self.ctx.step_id}: {len(failed)} request(s) failed in an earlier build and are not "
                     "submitted again; --retry-failed asks them again")
        return [h for h in hashes if h not in failed]

    # -- budget ------------------------------------------------------------------
    def _admit(self, hashes: list[str]) -> list[str]:
        """The hashes the budget lets us submit; the rest are answered `skipped`."""
        if not hashes:
            return []
        if price(self.cfg) is None:
            self.log(f"  note: no price known for model {self.cfg.model!r}; its calls count as $0 "
                     "(set llm.prices to enforce llm.budget_usd)")
        calls, spent = self.catalog.llm_usage(self.ctx.build_id)
        budget = Budget(self.cfg, calls, spent)
        admitted = []
        for h in hashes:
            r = self.todo[h]
            worst = cost_usd(self.cfg, estimate_tokens(r.prompt_text()), r.max_tokens, batch=True, model=r.model)
            if budget.admit(worst):
                admitted.append(h)
            else:
                self._answer(h, CallFailure(error=budget.stop_reason or "budget reached", status="skipped"))
        return admitted

    # -- submit / collect ------------------------------------------------------------
    def _submit(self, backend: BatchBackend, hashes: list[str]) -> None:
        groups: dict[str, list[str]] = defaultdict(list)
        for h in hashes:
            groups[backend.group(self.todo[h])].append(h)
        for group in groups.values():
            for chunk in _chunks(group, self.todo, backend.max_items):
                items = [(h, self.todo[h]) for h in chunk]
                intent = f"df-{uuid.uuid4().hex[:16]}"
                self.catalog.record_batch_intent(intent, (
                    {"provider": self.cfg.provider, "endpoint": self.endpoint, "model": r.model,
                     "build_id": self.ctx.build_id, "step_id": self.ctx.step_id, "request_hash": h,
                     "custom_id": h, "request": json.dumps(r.canonical(), ensure_ascii=False)} for h, r in items))
                try:
                    bid = backend.submit(items, {"dataforge_build": self.ctx.build_id or "",
                                                 "dataforge_step": self.ctx.step_id or "", INTENT_TAG: intent})
                except BatchAPIError as e:  # refused: nothing was created
                    self.catalog.abandon_batch_intent(intent, str(e)[:500])
                    raise
                self.catalog.confirm_batch(intent, bid)
                self.attempts.update(chunk)
                self.active.add(bid)
                self.log(f"  {self.ctx.step_id}: submitted {self.cfg.provider} batch {bid} ({len(items)} requests)")

    def _recover_intents(self, backend: BatchBackend) -> set[str]:
        """Batches submitted by a build that died before storing their ids: find them at the provider
        by their intent tag and poll them; an intent with no batch was never sent. Returns the hashes found."""
        found: set[str] = set()
        for intent, (when, hashes) in self.catalog.pending_batch_intents(
                sorted(self.todo), self.cfg.provider, self.endpoint).items():
            bid = backend.find(intent, when, set(hashes))
            if bid is None:
                self.catalog.abandon_batch_intent(intent, "no batch with this intent at the provider: never sent")
                continue
            self.catalog.confirm_batch(intent, bid)
            self.log(f"  {self.ctx.step_id}: found {self.cfg.provider} batch {bid}, submitted by an earlier build "
                     f"that stopped before recording it ({len(hashes)} requests); not submitting them again")
            found.update(hashes)
        return found

    def _collect(self, backend: BatchBackend, bid: str) -> list[str]:
        """Log an ended batch's results; return the hashes to submit again."""
        outcomes = backend.collect(bid)
        reason = backend.failed_reason(bid)
        missing = ItemFailure("failed", reason or "the batch returned no result for this item", reason is None)
        items = self._open_items(bid)
        return self._record(bid, items, {cid: outcomes.get(cid, missing) for cid in items})

    def _lost(self, bid: str, error: str) -> list[str]:
        """The provider no longer knows a stored batch: mark its items lost and submit them again."""
        self.log(f"  {self.ctx.step_id}: {error}; submitting its requests again")
        items = self._open_items(bid)
        return self._record(bid, items, {cid: ItemFailure("lost", error, True) for cid in items})

    def _open_items(self, bid: str) -> dict[str, dict[str, Any]]:
        """custom_id -> stored row for the items of a batch not yet collected."""
        return {row["custom_id"]: row for row in self.catalog.llm_batch_items(bid) if row["status"] == "submitted"}

    def _record(self, bid: str, items: dict[str, dict[str, Any]],
                outcomes: dict[str, Completion | ItemFailure]) -> list[str]:
        """Log outcomes to `llm_calls`, mark the items done, answer waiting requests; return hashes to resubmit."""
        calls, statuses, again = [], {}, []
        ok = 0
        for cid, outcome in outcomes.items():
            row = items[cid]
            h = row["request_hash"]
            r = Request.model_validate_json(row["request"])
            step_id = self.ctx.step_id if h in self.todo else row["step_id"]
            if isinstance(outcome, Completion):
                usd = cost_usd(self.cfg, outcome.input_tokens, outcome.output_tokens, batch=True, model=r.model)
                calls.append(call_row(r, build_id=self.ctx.build_id, step_id=step_id, status="ok",
                                      completion=outcome, cost_usd=usd, request_hash=h))
                statuses[cid] = ("succeeded", None)
                ok += 1
                self.usd += usd
                if h in self.waiting:
                    self._answer(h, outcome)
                continue
            error = f"batch {bid}: {outcome.status}: {outcome.error}"
            # `retry` when it is worth another submission (this run's, or a later build's when it is not
            # waited for here); `error` when it failed for good, which a later build does not ask again.
            retry = outcome.retryable and (h not in self.waiting or self.attempts[h] < self.cfg.batch_max_rounds)
            if outcome.status != "lost":
                calls.append(call_row(r, build_id=self.ctx.build_id, step_id=step_id,
                                      status="retry" if retry else "error", error=error, request_hash=h))
            statuses[cid] = (outcome.status, outcome.error)
            if h in self.waiting:
                if retry:
                    again.append(h)
                else:
                    self._answer(h, CallFailure(error=error, status="error"))
        self.catalog.finish_llm_batch(bid, calls, statuses)
        self.active.discard(bid)
        if outcomes:
            self.log(f"  {self.ctx.step_id}: batch {bid} done: {ok} ok, {len(outcomes) - ok} failed"
                     f"{f', {len(again)} submitted again' if again else ''}")
        return again

    def _answer(self, h: str, result: Result) -> None:
        self.answers[h] = result
        self.waiting.discard(h)
        if self.task is not None:
            self.task.advance(1, usd=f"${self.usd:.4f}")

    def _pending(self) -> BatchPending:
        ids = sorted(self.active)
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        return BatchPending(
            f"step {self.ctx.step_id}: {len(self.waiting)} requests are still being processed by "
            f"{self.cfg.provider} batch(es) {shown} after waiting {self.cfg.batch_wait_s:g}s (llm.batch_wait_s). "
            "The batch ids are stored in the catalog (table llm_batches); run `dataforge build` again later to "
            "collect the results. Nothing will be submitted again and nothing is paid twice.")


def _chunks(hashes: list[str], todo: dict[str, Request], max_items: int) -> list[list[str]]:
    """Split into batches of at most `max_items` requests and about `MAX_BATCH_BYTES` of request JSON."""
    out: list[list[str]] = [[]]
    size = 0
    for h in hashes:
        n = len(todo[h].prompt_text().encode()) + 200
        if out[-1] and (len(out[-1]) >= max_items or size + n > MAX_BATCH_BYTES):
            out.append([])
            size = 0
        out[-1].append(h)
        size += n
    return [c for c in out if c]
