"""Shared plumbing of the transform kinds: the task column, label names, k ranges."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

TASK = "task"


def parse_k(value: int | str | list[int] | tuple[int, int]) -> tuple[int, int]:
    """`4` -> (4, 4); `"2-10"` -> (2, 10); `[2, 10]` -> (2, 10)."""
    if isinstance(value, bool):
        raise ValueError("k must be an integer, a range like '2-10' or [min, max]")
    if isinstance(value, int):
        lo = hi = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", value)
        if not m:
            raise ValueError(f"k {value!r} is not an integer or a range like '2-10'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    else:
        if len(value) != 2:
            raise ValueError("k as a list must be [min, max]")
        lo, hi = int(value[0]), int(value[1])
    if lo < 1 or hi < lo:
        raise ValueError(f"k range {lo}-{hi} must satisfy 1 <= min <= max")
    return lo, hi


def names_for(label_names: dict[str, dict[str, str]], task: str) -> dict[str, str]:
    """Natural label names of a task: its own entry over the `"*"` entry; raw labels map to themselves."""
    return {**label_names.get("*", {}), **label_names.get(task, {})}


def as_str_keys(mapping: dict[Any, Any]) -> dict[str, Any]:
    """YAML reads `0: negative` with an int key; labels are compared as strings."""
    return {str(k): v for k, v in mapping.items()}


def stack_tasks(inputs: list[pl.DataFrame], names: list[str], task_column: str | None,
                always: bool = False) -> tuple[pl.DataFrame, str | None]:
    """One frame from a step's inputs. Without a `task_column`, several inputs (or any input when
    `always`) get a `task` column naming the step each row came from. Returns (frame, task column)."""
    if task_column is None and (always or len(inputs) > 1):
        inputs = [df.with_columns(pl.lit(n, dtype=pl.Utf8).alias(TASK)) for n, df in zip(names, inputs)]
        task_column = TASK
    return (pl.concat(inputs, how="diagonal_relaxed") if len(inputs) > 1 else inputs[0]), task_column


def check_task_keys(step_id: str, fields: dict[str, dict[str, Any]], tasks: list[str]) -> None:
    """Raise a `StepError` when a per-task map (`{field: {task: ...}}`) names a task that is not an input.

    Without a task column each input step is a task named by its id; a key naming none of them (a typo,
    or the id of the step *before* a `transform.flip`) was silently ignored, so its label names or
    instruction were never used.
    """
    from dataforge.steps.base import StepError

    for field_name, mapping in fields.items():
        unknown = [k for k in mapping if k != "*" and k not in tasks]
        if unknown:
            raise StepError(step_id, field_name, f"names no task of this step: {', '.join(map(repr, unknown))}; "
                                                 f"its tasks (input step ids) are {', '.join(map(repr, tasks))} "
                                                 f"(or '*' for every task)")
