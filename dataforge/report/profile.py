"""Column profiles by what a column holds: ids skipped, categories counted, text lengths, numbers, lists."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from dataforge.steps.base import ID, PARENT
from dataforge.textutil.words import word_count

MAX_CATEGORIES = 30
"""A string column with at most this many distinct values (and short values) is categorical."""
TOP_VALUES = 12
BINS = 24
HEX = re.compile(r"^[0-9a-f]{8,}$")
ID_NAME = re.compile(r"(^|_)(id|ids|hash|sha\d*|md5|fingerprint|uuid)$", re.I)


def kind_of(name: str, s: pl.Series) -> str:
    """`id`, `categorical`, `text`, `number`, `bool`, `list`, `struct` or `other`."""
    dt = s.dtype
    if name in (ID, PARENT) or ID_NAME.search(name):
        return "id"
    if isinstance(dt, pl.List | pl.Array):
        return "list"
    if isinstance(dt, pl.Struct):
        return "struct"
    if dt == pl.Boolean:
        return "bool"
    if dt.is_numeric():
        return "categorical" if dt.is_integer() and s.n_unique() <= 12 else "number"
    if dt in (pl.Utf8, pl.Categorical, pl.Enum):
        v = s.cast(pl.Utf8).drop_nulls()
        if v.len() == 0:
            return "other"
        distinct = v.n_unique()
        if distinct > 20 and v.len() > 0 and v.head(200).str.contains(HEX.pattern).all() and distinct == v.len():
            return "id"  # hashes: unique, hexadecimal
        words = word_count(pl.col("v"))
        mean_words = pl.DataFrame({"v": v}).select(words.mean()).item() or 0
        # Values recur (few distinct, or each seen twice on average): counting them says something.
        repeats = distinct < v.len() and (distinct <= MAX_CATEGORIES or distinct * 2 <= v.len())
        if repeats and (mean_words <= 3 or (distinct <= MAX_CATEGORIES and distinct < v.len() and mean_words <= 6)):
            return "categorical"  # labels, tasks, slugs: value counts say more than a length histogram
        return "text"  # short but never repeating (drawn symbols, task names) is text too
    return "other"


def histogram(values: pl.Series, unit: str, bins: int = BINS, integer: bool = True) -> dict[str, Any]:
    """Equal-width bins over p0-p99; values past p99 in one last `tail` bin, so a few long rows
    do not squash the rest. Quantile ticks (p25, median, p75, p95) for the axis."""
    v = values.drop_nulls().cast(pl.Float64)
    if v.len() == 0:
        return {"unit": unit, "counts": [], "edges": [], "tail": 0, "quantiles": {}}
    q = {name: float(v.quantile(p, "nearest")) for name, p in
         (("min", 0.0), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))}
    lo, hi = q["min"], q["p99"]
    if hi <= lo:
        hi = lo + 1
    if integer:
        width = max(1.0, float(-(-(hi - lo + 1) // bins)))
        n = int(-(-(hi - lo + 1) // width))
    else:
        width = (hi - lo) / bins
        n = bins
    inside = v.filter(v <= hi)
    idx = ((inside - lo) / width).floor().cast(pl.Int64).clip(0, n - 1)
    counts = [0] * n
    for b, c in idx.value_counts().iter_rows():
        counts[b] = c
    return {"unit": unit, "counts": counts, "edges": [lo + i * width for i in range(n + 1)],
            "tail": int((v > hi).sum()), "quantiles": q, "mean": round(float(v.mean()), 2)}


def profile(df: pl.DataFrame, task_column: str | None = None) -> list[dict[str, Any]]:
    """One entry per column: its kind and what to draw for it."""
    out = []
    for name in df.columns:
        s = df[name]
        kind = kind_of(name, s)
        p: dict[str, Any] = {"column": name, "kind": kind, "dtype": str(s.dtype), "nulls": s.null_count()}
        if kind == "id":
            p["note"] = (f"{s.drop_nulls().n_unique():,} distinct; skipped (an id or hash)" if s.null_count() < s.len()
                         else "all null")
        elif kind in ("categorical", "bool"):
            vc = (pl.DataFrame({"v": s.cast(pl.Utf8)}).group_by("v").len("n")
                  .sort(["n", "v"], descending=[True, False], nulls_last=True))
            p["distinct"] = vc.height
            p["values"] = [("(null)" if v is None else v, n) for v, n in vc.head(TOP_VALUES).iter_rows()]
            p["other"] = int(vc["n"].slice(TOP_VALUES).sum())
            if task_column and task_column != name and task_column in df.columns:
                p["per_task"] = _balance(df, task_column, name)
        elif kind == "text":
            words = df.select(word_count(pl.col(name)).alias("w"))["w"]
            if (words.median() or 0) <= 3:  # one or two words a row: their length in characters says more
                p["hist"] = histogram(df[name].str.len_chars(), "characters")
            else:
                p["hist"] = histogram(words, "words")
            p["chars_median"] = df.select(pl.col(name).str.len_chars().median()).item()
        elif kind == "number":
            p["hist"] = histogram(s, "value", integer=s.dtype.is_integer())
        elif kind == "list":
            lens = s.list.len()
            p["hist"] = histogram(lens, "items")
            p["note"] = (f"items per row: median {lens.median()}, max {lens.max()}; "
                         f"{int((lens == 0).sum()):,} empty")
        elif kind == "struct":
            p["note"] = "fields: " + ", ".join(f.name for f in s.dtype.fields)  # type: ignore[union-attr]
        out.append(p)
    return out


def _balance(df: pl.DataFrame, task: str, column: str) -> list[dict[str, Any]]:
    """Per task: each value's share, and the ratio of the largest class to the smallest."""
    g = (df.select(pl.col(task).cast(pl.Utf8).alias("task"), pl.col(column).cast(pl.Utf8).alias("v"))
         .group_by("task", "v").len("n").sort(["task", "n"], descending=[False, True]))
    out = []
    for (t,), part in g.group_by("task", maintain_order=True):
        counts = part["n"].to_list()
        out.append({"task": t, "rows": sum(counts), "values": list(zip(part["v"].to_list(), counts)),
                    "imbalance": round(max(counts) / min(counts), 2) if min(counts) else None})
    return out[:20]
