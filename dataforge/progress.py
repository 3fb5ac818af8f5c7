"""Progress of long work, for a person at a terminal and for a log.

On a terminal: a live rich bar per task (done/total, rate, extra fields such as tokens), shown
only once the task has run for `min_seconds`, so quick steps leave no flicker. Off a terminal
(CI, a log file, `| tee`): one plain line per task every `interval` seconds with counts and rate,
and a last line when a task that printed lines ends (`$DATAFORGE_PROGRESS_SECONDS` sets the
interval; default 5). `quiet` turns both off.

    with Progress() as progress:
        task = progress.task("unique", total=len(rows), unit="rows")
        for block in blocks:
            ...
            task.advance(len(block), tokens=1234)
        task.close()           # or `with progress.task(...) as task:`
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, TextIO

from rich.console import Console
from rich.table import Column
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskProgressColumn, \
    TextColumn, TimeElapsedColumn

from dataforge.display import escape_control


def _count(n: float) -> str:
    return f"{n:,.0f}" if n >= 10 or n == int(n) else f"{n:,.1f}"


class Task:
    """One unit of work. `advance(n, **fields)` counts `n` more done and updates its extra fields
    (shown as `name=value`); `set_total` when the total becomes known; `close` when done."""

    def __init__(self, owner: "Progress", description: str, total: int | None, unit: str,
                 fallback: bool = False):
        self._owner = owner
        self.fallback = fallback
        self.silenced = False
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self.fields: dict[str, Any] = {}
        self.started = owner._clock()
        self._last_line = self.started
        self._lines = 0
        self._closed = False
        self._id = owner._bar.add_task(description, total=total, extra="") if owner._bar is not None else None

    def advance(self, n: int = 1, **fields: Any) -> None:
        with self._owner._lock:
            self.done += n
            self.fields.update(fields)
            if self._id is not None:
                self._owner._bar.update(self._id, advance=n, extra=self._extra())
            if not self.silenced:
                self._owner._maybe_line(self)

    def set_total(self, total: int | None) -> None:
        with self._owner._lock:
            self.total = total
            if self._id is not None:
                self._owner._bar.update(self._id, total=total)

    def close(self) -> None:
        with self._owner._lock:
            if self._closed:
                return
            self._closed = True
            self._owner._open.discard(self)
            if self._id is not None:
                self._owner._bar.remove_task(self._id)
                self._id = None
            if self._lines:  # the log said it was under way: say it ended
                self._owner._write(self.line(final=True))
            self._owner._tasks.discard(self)

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def silence(self) -> None:
        """Stop showing this task (a more specific task took over); `close` still ends it."""
        self.silenced = True
        self._owner._tasks.discard(self)
        if self._id is not None:
            self._owner._bar.remove_task(self._id)
            self._id = None

    def _extra(self) -> str:
        return "  ".join(f"{k}={v}" for k, v in self.fields.items())

    def line(self, final: bool = False) -> str:
        """`  unique: 12,000 / 50,000 rows (24%), 2,400 rows/s, 5s  tokens=..` (the non-TTY line)."""
        elapsed = max(self._owner._clock() - self.started, 1e-9)
        if self.total:
            counts = f"{self.done:,} / {self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%)"
        else:
            counts = f"{self.done:,} {self.unit}"
        rate = f"{_count(self.done / elapsed)} {self.unit}/s"
        extra = f"  {self._extra()}" if self.fields else ""
        state = f"done in {elapsed:.0f}s" if final else f"{elapsed:.0f}s"
        return escape_control(f"  {self.description}: {counts}, {rate}, {state}{extra}")


_LIVE: Console | None = None


def live_console() -> Console | None:
    """The console of the live bars now on screen, or None. Messages printed through it appear above
    the bars; printed anywhere else on the same terminal they would tear the display."""
    return _LIVE


def _interval_from_env() -> float:
    try:
        return max(0.1, float(os.environ.get(INTERVAL_ENV, "5")))
    except ValueError:
        return 5.0


INTERVAL_ENV = "DATAFORGE_PROGRESS_SECONDS"


class _DelayedProgress(RichProgress):
    """A rich progress display that leaves out tasks younger than `min_seconds`."""

    min_seconds = 1.0

    def get_renderables(self):  # type: ignore[override]
        shown = [t for t in self.tasks if (t.elapsed or 0.0) >= self.min_seconds]
        yield self.make_tasks_table(shown)


class Progress:
    """The progress display of one build: live bars on a terminal, periodic lines otherwise."""

    def __init__(self, quiet: bool = False, *, stream: TextIO | None = None, interval: float | None = None,
                 min_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 live: bool | None = None, ticker: bool = True):
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self.interval = interval if interval is not None else _interval_from_env()
        self._lock = threading.RLock()
        self._tasks: set[Task] = set()  # the tasks due periodic lines (off a terminal)
        self._open: set[Task] = set()
        is_tty = live if live is not None else bool(getattr(self._stream, "isatty", lambda: False)())
        self.mode = "off" if quiet else ("live" if is_tty else "lines")
        self._bar: RichProgress | None = None
        if self.mode == "live":
            self.console = Console(file=self._stream)
            bar = _DelayedProgress(
                # one line per task whatever the terminal's width: long descriptions and fields end in …
                TextColumn("{task.description}", markup=False, style="bold",
                           table_column=Column(max_width=32, no_wrap=True, overflow="ellipsis")),
                BarColumn(bar_width=24), MofNCompleteColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[extra]}", markup=False,
                           table_column=Column(no_wrap=True, overflow="ellipsis")),
                console=self.console, transient=True,
            )
            bar.min_seconds = min_seconds
            self._bar = bar
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticker = ticker and self.mode == "lines"

    def __enter__(self) -> "Progress":
        global _LIVE
        if self._bar is not None:
            self._bar.start()
            _LIVE = self.console
        if self._ticker:
            self._thread = threading.Thread(target=self._tick_forever, name="dataforge-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        global _LIVE
        for t in list(self._tasks):
            t.close()
        if self._bar is not None:
            self._bar.stop()
            _LIVE = None

    def task(self, description: str, total: int | None = None, unit: str = "rows",
             fallback: bool = False) -> Task:
        """A new task; `unit` names what `advance` counts (rows, requests, texts). A `fallback` task
        (the build's generic one per step) gives way to any task opened while it is open: a step
        that counts its own work shows that count only, not a second line for the same work."""
        with self._lock:
            for other in list(self._open):
                if other.fallback and not other.silenced:
                    other.silence()
            t = Task(self, description, total, unit, fallback=fallback)
            self._open.add(t)
            if self.mode == "lines":
                self._tasks.add(t)
            return t

    # -- the non-TTY lines ----------------------------------------------------------
    def _maybe_line(self, t: Task) -> None:
        if self.mode != "lines":
            return
        now = self._clock()
        if now - t._last_line >= self.interval:
            t._last_line = now
            t._lines += 1
            self._write(t.line())

    def tick(self) -> None:
        """Print a line for every open task due one (also for tasks that have not advanced: the
        log shows that work is still going on)."""
        with self._lock:
            for t in list(self._tasks):
                self._maybe_line(t)

    def _tick_forever(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            self.tick()

    def _write(self, text: str) -> None:
        if self.mode != "lines":
            return
        try:
            self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe must not fail the build
            pass
