"""What the LLM engine, the call log and batch mode get from the step that calls them: a typed context.

`LLMContext` names exactly what they use; `llm_context` builds it from a step's `RunContext`
(the only place that knows how a running step maps onto it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

if TYPE_CHECKING:
    from dataforge.progress import Progress
    from dataforge.steps.base import RunContext


class LLMStore(Protocol):
    """The catalog methods the engine, the call log and batch mode call (nothing else of the catalog)."""

    def cached_llm_responses(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """request_hash -> the logged `ok` row, for the hashes answered before."""

    def record_llm_calls(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows to `llm_calls`."""

    def failed_llm_calls(self, hashes: list[str]) -> dict[str, str]:
        """request_hash -> error, for the hashes whose latest logged call failed for good."""

    def answered_hash_prefixes(self) -> Any:
        """Sorted numpy `S16` array of the first 16 characters of every request hash with an `ok` call
        (asked by multi-round sessions only, from their second round)."""

    def llm_usage(self, build_id: str) -> tuple[int, float]:
        """(calls sent, dollars spent) by a build so far."""

    def record_batch_intent(self, intent: str, rows: Iterable[dict[str, Any]]) -> None:
        """Remember the items of a batch before it is submitted."""

    def confirm_batch(self, intent: str, batch_id: str) -> None:
        """The batch of an intent was accepted under `batch_id`."""

    def abandon_batch_intent(self, intent: str, why: str) -> None:
        """No batch exists for an intent: its items were never sent."""

    def pending_batch_intents(self, hashes: list[str], provider: str,
                              endpoint: str) -> dict[str, tuple[Any, list[str]]]:
        """intent -> (recorded at, request hashes), for intents never confirmed."""

    def open_llm_batches(self, hashes: list[str], provider: str, endpoint: str) -> dict[str, str]:
        """request_hash -> batch id, for hashes already submitted and not yet collected."""

    def llm_batch_items(self, batch_id: str) -> list[dict[str, Any]]:
        """The stored items of one batch."""

    def finish_llm_batch(self, batch_id: str, calls: Iterable[dict[str, Any]],
                         statuses: dict[str, tuple[str, str | None]]) -> None:
        """Log a finished batch's calls and mark its items, in one transaction."""


@dataclass(frozen=True)
class LLMContext:
    """Identity and services of one step's LLM calls."""

    build_id: str = ""
    step_id: str = ""
    store: LLMStore | None = None
    """Where calls are logged and answers looked up; None runs without a call log (nothing cached)."""
    progress: "Progress | None" = None
    log: Callable[[str], None] = print
    resolve: Callable[[str], Path] = Path
    """Maps a recipe-relative path (`llm.model_path`) to a file."""
    summary: bool = True
    """Whether a session logs its summary line when it closes (the Ray driver logs one for all slices)."""
    retry_failed: bool = False
    """Ask again the requests whose logged call failed for good (`build --retry-failed`); batch mode otherwise
    answers them with that failure instead of submitting them again."""


def llm_context(ctx: "RunContext | LLMContext") -> LLMContext:
    """The LLM context of a running step (an `LLMContext` is returned as it is)."""
    if isinstance(ctx, LLMContext):
        return ctx
    return LLMContext(build_id=ctx.build_id or "", step_id=ctx.step_id or "", store=ctx.catalog,
                      progress=ctx.progress, log=ctx.log, resolve=ctx.resolve,
                      summary=ctx.llm_summary, retry_failed=ctx.retry_failed)
