"""The executor interface, the local executor, and choosing one (CLI flag > $DATAFORGE_EXECUTOR > recipe)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from dataforge.errors import UserError

if TYPE_CHECKING:
    import polars as pl
    from dataforge.steps.base import RunContext, Step, StepResult
else:
    from dataforge.lazy import polars as pl

EXECUTORS = ("local", "ray")
ENV = "DATAFORGE_EXECUTOR"
RAY_INSTALL = "pip install 'dataforge[ray]'"


class Executor(Protocol):
    """Runs one step's work and returns what `Step.run` would; the caller stores it."""

    name: str

    def run_step(self, step: "Step", inputs: list[pl.DataFrame], ctx: "RunContext") -> "StepResult | pl.DataFrame":
        ...

    def close(self) -> None:
        ...


class LocalExecutor:
    """Every step in this process: `step.run(inputs, ctx)`, nothing added."""

    name = "local"

    def run_step(self, step: "Step", inputs: list[pl.DataFrame], ctx: "RunContext") -> "StepResult | pl.DataFrame":
        return step.run(inputs, ctx)

    def close(self) -> None:
        pass


def resolve_executor(flag: str | None, recipe_value: str | None) -> str:
    """The executor's name: `--executor`, else `$DATAFORGE_EXECUTOR`, else the recipe's `executor:`, else local."""
    for value, where in ((flag, "--executor"), (os.environ.get(ENV) or None, f"${ENV}"),
                         (recipe_value, "executor")):
        if value is None:
            continue
        if value not in EXECUTORS:
            raise UserError(f"{where} {value!r}: unknown executor; choose one of {', '.join(EXECUTORS)}")
        return value
    return "local"


def check_executor(name: str) -> None:
    """Fail at validation when the executor's package is missing."""
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError(f"--executor ray needs Ray, which is not installed; install it with: {RAY_INSTALL}") \
                from None


def open_executor(name: str, ray_address: str | None = None) -> Executor:
    """A ready executor: for `ray`, connected to the cluster at `ray_address` (or a local one)."""
    check_executor(name)
    if name == "ray":
        from dataforge.executors.ray_cluster import RayExecutor

        return RayExecutor.connect(ray_address)
    if ray_address:
        raise UserError("--ray-address needs --executor ray")
    return LocalExecutor()
