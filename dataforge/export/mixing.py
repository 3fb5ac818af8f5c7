"""The per-row work of an export, vectorised with polars: dedup, seeded sampling, group split, messages.

Random choices are counter-based numbers (`dataforge.textutil.randomness`) keyed by each row's
content id (or its position when a frame has no ids), so the same seed and data give the same
rows wherever they sit in the input.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dataforge.textutil import randomness

SOURCE = "source"


def row_keys(df: pl.DataFrame) -> np.ndarray:
    """A uint64 per row: from its content `id` when every row has one, else its position."""
    if "id" in df.columns and df.height and df["id"].null_count() == 0:
        return randomness.row_keys(df["id"])
    return np.arange(df.height, dtype=np.uint64)


def seeded_hash(keys: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    """64 pseudo-random bits per key for (seed, purpose)."""
    return randomness.bits(keys, seed, f"export:{purpose}")


def normalize_text(expr: pl.Expr) -> pl.Expr:
    """Lower-case, collapse whitespace runs, trim: the dedup comparison key."""
    return expr.cast(pl.Utf8).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def dedup_across(frames: list[pl.DataFrame], column: str, normalize: bool) -> tuple[list[pl.DataFrame], list[int]]:
    """Drop rows whose `column` repeats an earlier row (earlier source first, then row order).

    Returns the kept frames and how many rows each source lost.
    """
    tagged = pl.concat([f.select(pl.col(column)).with_columns(pl.lit(i, pl.UInt32).alias("_src"))
                        for i, f in enumerate(frames)], how="vertical_relaxed")
    key = normalize_text(pl.col(column)) if normalize else pl.col(column)
    keep = tagged.select(key.is_first_distinct().alias("keep"))["keep"]
    out, dropped, start = [], [], 0
    for f in frames:
        mask = keep.slice(start, f.height)
        start += f.height
        out.append(f.filter(mask))
        dropped.append(f.height - out[-1].height)
    return out, dropped


def sample_rows(df: pl.DataFrame, count: int, seed: int, source_index: int) -> pl.DataFrame:
    """`count` rows chosen by seeded hash rank, kept in their original order."""
    if count >= df.height:
        return df
    h = seeded_hash(row_keys(df), seed, f"sample:{source_index}")
    chosen = np.sort(np.lexsort((np.arange(df.height), h))[:count])
    return df[chosen]


def shuffle_rows(df: pl.DataFrame, seed: int) -> pl.DataFrame:
    """A seeded permutation of the rows (ties, i.e. identical ids, keep their order)."""
    h = seeded_hash(row_keys(df), seed, "shuffle")
    return df[np.lexsort((np.arange(df.height), h))]


def split_groups(df: pl.DataFrame, group_column: str | None, fraction: float, seed: int) -> pl.Series:
    """Boolean `validation` flag per row; all rows of a group get the same flag.

    Groups are ordered by a seeded hash of their value; each that still fits in
    round(fraction * rows) goes to validation (the first group when none fits); at least one
    group stays in train.
    """
    n = df.height
    if fraction <= 0 or n == 0:
        return pl.Series("validation", [False] * n)
    if group_column is None:
        gkey = pl.Series("_g", seeded_hash(row_keys(df), seed, "row-group"))
        groups = pl.DataFrame({"_g": gkey, "_h": gkey})
    else:
        values = df[group_column].cast(pl.Utf8).fill_null("\x00null")
        uniq = values.unique(maintain_order=True)
        hashes = seeded_hash(randomness.row_keys(uniq), seed, "group")
        gkey = values.alias("_g")
        groups = pl.DataFrame({"_g": uniq, "_h": pl.Series(hashes, dtype=pl.UInt64)})
    sizes = gkey.value_counts(name="_n").rename({gkey.name: "_g"})
    order = groups.unique("_g", keep="first", maintain_order=True).join(sizes, on="_g").sort(["_h", "_g"])
    take = _fill(order["_n"].to_numpy(), round(fraction * n))
    return gkey.is_in(order.filter(pl.Series(take))["_g"].implode()).alias("validation")


def _fill(sizes: np.ndarray, target: int) -> np.ndarray:
    """Which groups (in hash order) go to validation: each that still fits in `target` rows (the
    first group when none fits); never every group."""
    take = np.zeros(sizes.size, dtype=bool)
    if target <= 0 or sizes.size < 2:
        return take
    if (sizes == 1).all():
        take[:target] = True
    else:
        filled = 0
        for j, size in enumerate(sizes.tolist()):
            if filled + size <= target:
                take[j] = True
                filled += size
        if not filled:
            take[0] = True
    if take.all():
        take[-1] = False
    return take


def with_messages(df: pl.DataFrame, system_prompt: str | None) -> pl.DataFrame:
    """Add `messages`: [system?], user = prompt, assistant = completion."""

    def msg(role: str, content: pl.Expr) -> pl.Expr:
        return pl.struct(pl.lit(role).alias("role"), content.cast(pl.Utf8).alias("content"))

    parts = [msg("user", pl.col("prompt")), msg("assistant", pl.col("completion"))]
    if system_prompt is not None:
        parts.insert(0, msg("system", pl.lit(system_prompt)))
    return df.with_columns(pl.concat_list(parts).alias("messages"))
