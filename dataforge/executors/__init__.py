"""Where a step's work runs: in this process (`local`, the default) or across a Ray cluster (`ray`).

The planner and the catalog know nothing of executors; `dataforge.build.execute` hands each step it
runs to `Executor.run_step`, and stores what comes back as it always does.
"""

from dataforge.executors.base import EXECUTORS, Executor, LocalExecutor, open_executor, resolve_executor

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "open_executor", "resolve_executor"]
