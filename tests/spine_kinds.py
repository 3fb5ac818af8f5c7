"""Test-only step kinds for the spine tests (registered globally on import, hence the `test.` prefix).

Also importable in a subprocess: `python -c "import spine_kinds; from dataforge.cli import main; main()" ...`
with `tests/` on PYTHONPATH.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl

from dataforge.steps.base import RunContext, Step, StepError


class Upper(Step):
    """Upper-cases one text column (keeps row ids: a transform of the same rows)."""

    type: Literal["test.upper"]
    column: str = "instruction"
    """Column to upper-case."""
    suffix: str = ""
    """Appended to every value (a param to change in reuse tests)."""

    def required_columns(self) -> list[str]:
        return [self.column]

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        return inputs[0].with_columns(pl.col(self.column).str.to_uppercase() + self.suffix)


class Slow(Step):
    """Sleeps, then passes rows through; touches `marker` (if set) when it starts sleeping."""

    type: Literal["test.slow"]
    seconds: float = 3.0
    """How long to sleep."""
    marker: str | None = None
    """File created when the step starts (lets a test know the build is mid-way)."""

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        if self.marker:
            Path(self.marker).write_text(str(os.getpid()))
        time.sleep(self.seconds)
        return inputs[0]


class Counting(Step):
    """Passes rows through in blocks, reporting progress for each (sleeps `pause` seconds a block)."""

    type: Literal["test.counting"]
    blocks: int = 5
    """How many blocks the rows are split into."""
    pause: float = 0.1
    """Seconds per block."""

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        df = inputs[0]
        size = max(1, -(-df.height // self.blocks))
        with ctx.progress.task(self.id, total=df.height) as task:
            for start in range(0, df.height, size):
                time.sleep(self.pause)
                task.advance(min(size, df.height - start))
        return df


class Boom(Step):
    """Fails at run time: `kind: user` raises a StepError (exit 2), `internal` a RuntimeError (exit 1)."""

    type: Literal["test.boom"]
    kind: Literal["user", "internal"] = "internal"
    """Which kind of failure."""

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        if self.kind == "user":
            raise StepError(self.id, "kind", "boom as requested")
        raise RuntimeError("boom: an internal fault\nsecond line of detail")


class Explode(Step):
    """Makes new rows: each input row becomes `n` rows (tests id re-hashing and lineage)."""

    type: Literal["test.explode"]
    n: int = 2
    """Copies per row."""
    new_rows: ClassVar[bool] = True

    def added_columns(self) -> list[str]:
        return ["copy"]

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        df = inputs[0]
        parts = [df.with_columns(pl.lit(i).alias("copy")) for i in range(self.n)]
        return pl.concat(parts)
