"""`StepHandle`: the part of the catalog a running step may use.

Steps never get the read-write `Catalog`: storing outputs, rejections, lineage and dataset
versions is the executor's job. A step may read datasets, and (through the LLM engine) use the
call log and the batch records of its own build and step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from dataforge.catalog import query as q
from dataforge.catalog.store import Catalog

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl


class StepHandle:
    """Narrow access to one catalog for one running step."""

    def __init__(self, catalog: Catalog):
        self._catalog = catalog

    @property
    def path(self) -> Path:
        return self._catalog.path

    # -- reading ---------------------------------------------------------------
    def read_dataset(self, name: str, version: int | None = None) -> pl.DataFrame:
        """Every row of a dataset version (latest unless `version`)."""
        return q.read_dataset(self.path, name, version)

    # -- the LLM call log (used by the engine) -----------------------------------------
    def cached_llm_responses(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        return self._catalog.cached_llm_responses(hashes)

    def record_llm_calls(self, rows: Iterable[dict[str, Any]]) -> None:
        self._catalog.record_llm_calls(rows)

    def failed_llm_calls(self, hashes: list[str]) -> dict[str, str]:
        return self._catalog.failed_llm_calls(hashes)

    def answered_hash_prefixes(self) -> Any:
        return self._catalog.answered_hash_prefixes()

    def llm_usage(self, build_id: str) -> tuple[int, float]:
        return self._catalog.llm_usage(build_id)

    # -- batch API submissions (used by the batch runner) -------------------------------
    def record_batch_intent(self, intent: str, rows: Iterable[dict[str, Any]]) -> None:
        self._catalog.record_batch_intent(intent, rows)

    def confirm_batch(self, intent: str, batch_id: str) -> None:
        self._catalog.confirm_batch(intent, batch_id)

    def abandon_batch_intent(self, intent: str, why: str) -> None:
        self._catalog.abandon_batch_intent(intent, why)

    def pending_batch_intents(self, hashes: list[str], provider: str,
                              endpoint: str) -> dict[str, tuple[Any, list[str]]]:
        return self._catalog.pending_batch_intents(hashes, provider, endpoint)

    def open_llm_batches(self, hashes: list[str], provider: str, endpoint: str) -> dict[str, str]:
        return self._catalog.open_llm_batches(hashes, provider, endpoint)

    def llm_batch_items(self, batch_id: str) -> list[dict[str, Any]]:
        return self._catalog.llm_batch_items(batch_id)

    def finish_llm_batch(self, batch_id: str, calls: Iterable[dict[str, Any]],
                         outcomes: dict[str, tuple[str, str | None]]) -> None:
        self._catalog.finish_llm_batch(batch_id, calls, outcomes)
