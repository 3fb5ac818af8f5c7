"""The durable call log: rows for `llm_calls`, written in short group-commit transactions as answers arrive."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from dataforge.llm.context import LLMStore

from dataforge.llm.types import Completion, Request


def request_params(r: Request) -> str:
    """The sampling parameters of a request as JSON (the `params` column)."""
    return json.dumps({"temperature": r.temperature, "top_p": r.top_p, "max_tokens": r.max_tokens,
                       "stop": list(r.stop) if r.stop else None, "seed": r.seed, "sample_index": r.sample_index,
                       **{k: v for k in ("presence_penalty", "frequency_penalty")
                          if (v := getattr(r, k)) is not None}, **r.extra}, sort_keys=True)


def call_row(r: Request, *, build_id: str, step_id: str, status: str, completion: Completion | None = None,
             cost_usd: float = 0.0, error: str | None = None, latency_ms: float | None = None,
             request_hash: str | None = None, keep_prompt: bool = True) -> dict[str, Any]:
    """One `llm_calls` row. Statuses: ok, retry (a failed attempt that was retried), error, cached."""
    c = completion
    return {
        "request_hash": request_hash or r.hash(), "build_id": build_id, "step_id": step_id,
        "provider": r.provider, "model": r.model, "params": request_params(r),
        "prompt": r.prompt_text() if keep_prompt else None, "response": c.text if c else None,
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
    """Buffers rows and commits them from a background task: every `interval_s`, or as soon as `max_rows`
    are waiting. A crash (even `kill -9`) loses at most the answers of the last interval; `close()` commits
    the rest. Each commit opens the catalog briefly, so other processes get in between."""

    def __init__(self, store: LLMStore | None, *, max_rows: int = 500, interval_s: float = 0.5):
        self.store = store
        self.max_rows = max_rows
        self.interval_s = interval_s
        self.pending: list[dict[str, Any]] = []
        self._committing: list[list[dict[str, Any]]] = []  # batches taken from `pending`, commit not yet returned
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def add(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.max_rows:
            self._wake.set()

    def uncommitted_ok(self, hashes: set[str]) -> dict[str, dict[str, Any]]:
        """`ok` rows for these request hashes that are buffered or being committed (latest per hash):
        answers the catalog does not show yet."""
        rows = [r for batch in self._committing for r in batch] + self.pending
        return {r["request_hash"]: r for r in rows if r["status"] == "ok" and r["request_hash"] in hashes}

    async def flush(self) -> None:
        """Commit the rows waiting now (rows added meanwhile wait for the next round)."""
        rows, self.pending = self.pending, []
        self._committing.append(rows)
        try:
            for i in range(0, len(rows), self.max_rows):
                if self.store is not None:
                    await asyncio.to_thread(self.store.record_llm_calls, rows[i:i + self.max_rows])
        finally:
            self._committing.remove(rows)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            started = loop.time()
            await self.flush()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.interval_s - (loop.time() - started)))
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

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
