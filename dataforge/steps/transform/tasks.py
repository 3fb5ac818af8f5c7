"""Shared plumbing of the transform kinds: rows grouped into tasks, label names, k ranges."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from dataforge.steps.base import ID, StepError

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


def task_frames(step_id: str, input_ids: list[str], inputs: list[pl.DataFrame], task_column: str | None,
                columns: dict[str, str]) -> list[tuple[str, pl.DataFrame]]:
    """Split the inputs into tasks, each a frame with `id` and the renamed `columns` (new: old), as str.

    With `task_column`, rows are grouped by its values (across all inputs); without it, each
    input is one task named after the step it comes from.
    """
    out: list[tuple[str, pl.DataFrame]] = []
    for src, df in zip(input_ids, inputs):
        need = [c for c in [*columns.values(), *([task_column] if task_column else [])] if c not in df.columns]
        if need:
            raise StepError(step_id, None, f"input {src!r} lacks column(s) {', '.join(map(repr, need))}")
        sel = [pl.col(ID).cast(pl.Utf8)] + [pl.col(old).cast(pl.Utf8).alias(new) for new, old in columns.items()]
        if task_column:
            sel.append(pl.col(task_column).cast(pl.Utf8).alias(TASK))
        else:
            sel.append(pl.lit(src, dtype=pl.Utf8).alias(TASK))
        out.append((src, df.select(sel)))
    frame = pl.concat([f for _, f in out], how="vertical") if out else pl.DataFrame()
    if frame.height == 0:
        return []
    # Equal rows share a content id; one copy is enough (and keeps ids unique within a task).
    frame = frame.unique(subset=[ID, TASK], keep="first", maintain_order=True)
    if frame.height == 0:
        return []
    tasks = frame[TASK].unique(maintain_order=True).to_list()
    return [(t, frame.filter(pl.col(TASK) == t).drop(TASK)) for t in tasks]


def names_for(label_names: dict[str, dict[str, str]], task: str) -> dict[str, str]:
    """Natural label names of a task: its own entry over the `"*"` entry; raw labels map to themselves."""
    return {**label_names.get("*", {}), **label_names.get(task, {})}


def as_str_keys(mapping: dict[Any, Any]) -> dict[str, Any]:
    """YAML reads `0: negative` with an int key; labels are compared as strings."""
    return {str(k): v for k, v in mapping.items()}
