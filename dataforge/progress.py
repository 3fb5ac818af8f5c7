"""Live progress for long steps: a rich bar per step with done/total, rate and extra fields."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskProgressColumn, \
    TextColumn, TimeElapsedColumn


class Task:
    """One bar. `advance(n, tokens=..., usd=...)` moves it and updates its extra fields."""

    def __init__(self, owner: "Progress", task_id: Any):
        self._owner = owner
        self._id = task_id
        self.fields: dict[str, Any] = {}

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.fields.update(fields)
        extra = "  ".join(f"{k}={v}" for k, v in self.fields.items())
        self._owner._bar.update(self._id, advance=n, extra=extra)

    def set_total(self, total: int | None) -> None:
        self._owner._bar.update(self._id, total=total)

    def close(self) -> None:
        self._owner._bar.remove_task(self._id)


class Progress:
    """Owns the live display for one build; disabled when stderr is not a terminal or `quiet`."""

    def __init__(self, quiet: bool = False):
        self.console = Console(stderr=True)
        enabled = not quiet and sys.stderr.isatty()
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[extra]}"),
            console=self.console, disable=not enabled, transient=True,
        )

    def __enter__(self) -> "Progress":
        self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.stop()

    def task(self, description: str, total: int | None = None) -> Task:
        return Task(self, self._bar.add_task(description, total=total, extra=""))
