"""Label flips: binary tasks swap their two labels, multi-class tasks get a seeded derangement."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl


def flip_map(labels: list[str], seed: int, task: str = "") -> dict[str, str]:
    """A map from each label to a different one: the swap for two labels, else a derangement.

    The derangement is uniform over all derangements of the sorted labels, drawn from a
    generator seeded by (seed, task), so every row of a task flips the same way.
    """
    labels = sorted(set(labels))
    if len(labels) < 2:
        raise ValueError(f"task {task!r} has {len(labels)} label(s); flipping needs at least 2")
    if len(labels) == 2:
        return {labels[0]: labels[1], labels[1]: labels[0]}
    digest = hashlib.sha256(f"flip:{seed}:{task}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    idx = np.arange(len(labels))
    while True:
        perm = rng.permutation(len(labels))
        if not (perm == idx).any():
            return {labels[i]: labels[int(p)] for i, p in enumerate(perm)}


def flip_labels(df: pl.DataFrame, label_column: str, seed: int, task_column: str | None = None,
                task: str = "") -> pl.DataFrame:
    """Replace `label_column` with its flipped label; add `original_label` and `flip_map` (JSON).

    Rows are flipped per task (`task_column`, or the whole frame as task `task`).
    """
    labels = pl.col(label_column).cast(pl.Utf8)
    groups = df[task_column].cast(pl.Utf8).unique(maintain_order=True).to_list() if task_column else [task]
    parts = []
    for t in groups:
        part = df if task_column is None else df.filter(pl.col(task_column).cast(pl.Utf8) == t)
        m = flip_map(part[label_column].cast(pl.Utf8).drop_nulls().to_list(), seed, t)
        parts.append(part.with_columns(
            labels.alias("original_label"),
            labels.replace_strict(m, return_dtype=pl.Utf8).alias(label_column),
            pl.lit(json.dumps(m, ensure_ascii=False)).alias("flip_map"),
        ))
    if task_column is None:
        return parts[0]
    order = df.with_row_index("_row").select("_row", pl.col(task_column).cast(pl.Utf8).alias("_t"))
    out = pl.concat(parts, how="vertical")
    # Back to the input order.
    return out.with_columns(pl.Series("_row", np.concatenate(
        [order.filter(pl.col("_t") == t)["_row"].to_numpy() for t in groups]))).sort("_row").drop("_row")
