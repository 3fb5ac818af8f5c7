"""The durable call log: rows for `llm_calls`, written in short group-commit transactions as answers arrive."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

from dataforge.llm.context import LLMStore

from dataforge.llm.types import Completion, Request

MAX_DELAY_S = 0.8
"""How long an answer waits in the buffer at most before its commit starts (a commit takes tens of ms)."""


def request_params(r: Request) -> str:
    """The sampling parameters of a request as JSON (the `params` column)."""
    return json.dumps({"temperature": r.temperature, "top_p": r.top_p, "max_tokens": r.max_tokens,
                       "stop": list(r.stop) if r.stop else None, "seed": r.seed, "sample_index": r.sample_index,
                       **{k: v for k in ("presence_penalty", "frequency_penalty")
                          if (v := getattr(r, k)) is not None}, **r.extra}, sort_keys=True)


def call_row(r: Request, *, build_id: str, step_id: str, status: str, completion: Completion | None = None,
             cost_usd: float = 0.0, error: str | None = None, latency_ms: float | None = None,
             request_hash: str | None = None, keep_prompt: bool = True,
             prompt_text: str | None = None) -> dict[str, Any]:
    """One `llm_calls` row. Statuses: ok, retry (a failed attempt that was retried), error, cached.
    `prompt_text`: the request's `prompt_text()` when the caller has it already."""
    c = completion
    return {
        "request_hash": request_hash or r.hash(), "build_id": build_id, "step_id": step_id,
        "provider": r.provider, "model": r.model, "params": request_params(r),
        "prompt": (prompt_text if prompt_text is not None else r.prompt_text()) if keep_prompt else None, "response": c.text if c else None,
        "finish_reason": c.finish_reason if c else None,
        "input_tokens": c.input_tokens if c else 0, "output_tokens": c.output_tokens if c else 0,
        "cost_usd": cost_usd, "latency_ms": latency_ms if latency_ms is not None else (c.latency_ms if c else None),
        "status": status, "error": error,
        "created_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
    }


def completion_from_row(row: dict[str, Any]) -> Completion:
    """A cached answer from a logged `ok` row."""
    return Completion(text=row["response"] or "", finish_reason=row["finish_reason"],
                      input_tokens=row["input_tokens"] or 0, output_tokens=row["output_tokens"] or 0,
                      latency_ms=row["latency_ms"] or 0.0, cached=True)


class CallLog:
    """Buffers rows and commits them from a background task: a row waits at most `max_delay_s` before the
    commit that writes it starts (at once when `max_rows` are waiting), so an answer is durable within a
    second of arriving while a steady stream of answers costs one commit per `max_delay_s`, not one per
    answer (opening the catalog for a commit costs about 30 ms of CPU). A crash (even `kill -9`) loses at
    most the answers of that last stretch; `close()` commits the rest. Each commit opens the catalog
    briefly, so other processes get in between. A commit that fails (the catalog locked past the wait,
    a full disk) keeps its rows for the next one; only `close()` reports the failure."""

    def __init__(self, store: LLMStore | None, *, max_rows: int = 500, max_delay_s: float | None = None):
        self.store = store
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s if max_delay_s is not None else \
            getattr(store, "commit_delay_s", MAX_DELAY_S)
        self.pending: list[dict[str, Any]] = []
        self._committing: list[list[dict[str, Any]]] = []  # batches taken from `pending`, commit not yet returned
        self._oldest = 0.0  # when the first row now in `pending` was added (time.monotonic)
        self._wake = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def add(self, row: dict[str, Any]) -> None:
        if not self.pending:
            self._oldest = time.monotonic()
            self._wake.set()
        self.pending.append(row)
        if len(self.pending) >= self.max_rows:
            self._wake.set()

    def uncommitted_ok(self, hashes: set[str]) -> dict[str, dict[str, Any]]:
        """`ok` rows for these request hashes that are buffered or being committed (latest per hash):
        answers the catalog does not show yet."""
        rows = [r for batch in self._committing for r in batch] + self.pending
        return {r["request_hash"]: r for r in rows if r["status"] == "ok" and r["request_hash"] in hashes}

    async def flush(self) -> None:
        """Commit the rows waiting now; on return every row added before the call is committed (a commit
        already under way finishes first). Rows added meanwhile wait for the next commit."""
        rows, self.pending = self.pending, []
        self._committing.append(rows)
        done = 0
        try:
            async with self._commit_lock:
                for done in range(0, len(rows), self.max_rows):
                    if self.store is not None:
                        await asyncio.to_thread(self.store.record_llm_calls, rows[done:done + self.max_rows])
                done = len(rows)
        except Exception:  # refused (not cancelled: a commit's thread may still finish): kept for the next one
            self.pending[:0] = rows[done:]
            raise
        finally:
            self._committing.remove(rows)

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            if not self.pending:
                await self._wake.wait()  # the first row, or close
                continue
            due = self._oldest + self.max_delay_s - time.monotonic()
            if due > 0 and len(self.pending) < self.max_rows:
                try:  # until due, unless `max_rows` are waiting, a flush emptied the buffer, or close
                    await asyncio.wait_for(self._wake.wait(), due)
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                await self.flush()
            except Exception:  # the catalog busy (a long reader), a full disk: the rows wait for the next try
                self._oldest = time.monotonic()
                self._wake.clear()
                try:  # a while, unless close comes first: it commits what is left itself
                    await asyncio.wait_for(self._wake.wait(), self.max_delay_s)
                except asyncio.TimeoutError:
                    pass

    async def close(self) -> None:
        """Stop the background task and commit everything still buffered (also after cancellation)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        while self.pending:
            await self.flush()
