"""Panels a dataset earns by its columns: symbol-tuning prompts, graded rationales, LLM steps."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import polars as pl

from dataforge.catalog import query as q

SYMBOL_COLUMNS = {"prompt", "target", "symbol_map", "exemplar_ids"}
GRADED_COLUMNS = {"correct", "label", "grade_reason"}


def _symbol_kind(sym: str) -> str:
    if re.fullmatch(r"-?\d+", sym):
        return "integer"
    if re.fullmatch(r"[A-Z]+", sym):
        return "letters"
    if re.fullmatch(r"[a-z]+", sym):
        return "word"
    return "other"


def _format_of(prompt: str) -> str:
    """The input-label format of a prompt's query block, e.g. `Text: {input} / Answer:` or `{input} / ->`."""
    block = prompt.rstrip("\n").rsplit("\n\n", 1)[-1]
    lines = block.splitlines() or [""]
    m = re.match(r"^([A-Za-z][\w ]{0,20}):\s", lines[0])
    if m and ("\n" + prompt).count("\n" + m.group(0)) < 2:
        m = None  # a label starts every exemplar too; once only, it is the input's own text ("the verdict : ...")
    head = f"{m.group(1)}: {{input}}" if m else "{input}"
    tail = lines[-1].strip() if len(lines) > 1 else (lines[0].rsplit(" ", 1)[-1] if " " in lines[0] else "")
    return f"{head} / {tail}" if len(lines) > 1 else f"{head} {tail}"


def symbols(df: pl.DataFrame) -> dict[str, Any] | None:
    """Symbol-tuning prompts (columns of `transform.symbols`): k per class, symbol pools, formats."""
    if not SYMBOL_COLUMNS <= set(df.columns):
        return None
    k_counts: Counter = Counter()
    kinds: Counter = Counter()
    classes: Counter = Counter()
    formats: Counter = Counter()
    symbols_seen: Counter = Counter()
    for prompt, smap, ex in df.select("prompt", "symbol_map", "exemplar_ids").iter_rows():
        try:
            m = json.loads(smap) if isinstance(smap, str) else dict(smap or {})
        except ValueError:
            m = {}
        n_cls = max(len(m), 1)
        classes[len(m)] += 1
        k = len(ex or []) / n_cls
        k_counts[int(k) if k == int(k) else round(k, 1)] += 1
        for s in m.values():
            kinds[_symbol_kind(str(s))] += 1
            symbols_seen[str(s)] += 1
        formats[_format_of(prompt or "")] += 1
    return {"prompts": df.height, "k_per_class": sorted(k_counts.items()), "classes": sorted(classes.items()),
            "symbol_kinds": kinds.most_common(), "distinct_symbols": len(symbols_seen),
            "top_symbols": [t for t in symbols_seen.most_common(10) if t[1] > 1], "formats": formats.most_common(12),
            "tasks": (df["task"].value_counts(sort=True).rows() if "task" in df.columns else [])}


def _question_column(df: pl.DataFrame) -> str | None:
    for c in ("question", "instruction", "prompt", "problem"):
        if c in df.columns:
            return c
    return None


ALL_WRONG_SHOWN = 20
"""Questions with no correct rationale the graded panel lists (in the dataset's order; a note counts the rest)."""


def graded(df: pl.DataFrame) -> dict[str, Any] | None:
    """Graded rationales (`transform.grade` / `generate.teacher_cot`): positives and negatives per question."""
    if not GRADED_COLUMNS <= set(df.columns):
        return None
    qcol = _question_column(df)
    correct = df["correct"].cast(pl.Boolean)
    out: dict[str, Any] = {"rows": df.height, "positive": int(correct.sum()), "negative": int((~correct).sum()),
                           "reasons": df["grade_reason"].cast(pl.Utf8).value_counts(sort=True).head(10).rows(),
                           "question_column": qcol}
    if qcol:
        per = (df.with_columns(correct.alias("_c")).group_by(qcol, maintain_order=True)
               .agg(pl.col("_c").sum().alias("pos"), (~pl.col("_c")).sum().alias("neg")))
        out["questions"] = per.height
        out["all_wrong"] = int((per["pos"] == 0).sum())
        out["all_right"] = int((per["neg"] == 0).sum())
        spread = per.group_by("pos").len("questions").sort("pos")
        out["positives_per_question"] = spread.rows()
        out["all_wrong_examples"] = per.filter(pl.col("pos") == 0)[qcol].head(ALL_WRONG_SHOWN).to_list()
    return out


def llm(catalog, built: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per LLM step of the dataset's ancestry, from the build that made its output: calls, tokens,
    cost and latency percentiles (`built` is (step_id, build_id) pairs)."""
    if not built:
        return []
    pairs = " or ".join(f"(step_id = '{s.replace(chr(39), chr(39) * 2)}' and build_id = '{b.replace(chr(39), chr(39) * 2)}')"
                        for s, b in built)
    df = q.run_select(catalog, f"""
        select step_id, provider || ':' || model as model, count(*) as calls,
               count(*) filter (where status = 'ok') as ok,
               coalesce(sum(input_tokens), 0) as input_tokens, coalesce(sum(output_tokens), 0) as output_tokens,
               round(coalesce(sum(cost_usd), 0), 6) as cost_usd,
               round(quantile_cont(latency_ms, 0.5)) as p50_ms, round(quantile_cont(latency_ms, 0.9)) as p90_ms,
               round(quantile_cont(latency_ms, 0.99)) as p99_ms
        from llm_calls where {pairs}
        group by all order by step_id""")
    return df.to_dicts()
