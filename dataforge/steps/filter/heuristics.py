"""`filter.heuristics`: cheap rule-based filters, Self-Instruct's instruction rules among them.

Every rule is a param with Self-Instruct's default; each dropped row is recorded with the
name of the first rule that matched it (rules are tried in the order of the fields below).
All rules are polars expressions over an NFKC-normalised copy of the text, so full-width
letters, ligatures and compatibility forms compare like their plain counterparts.
"""

from __future__ import annotations

import re
from typing import Literal

import polars as pl
from pydantic import Field, field_validator

from dataforge.steps.base import ID, RunContext, Step, StepResult, check_text_columns, rejections_frame
from dataforge.textutil.words import normalized, word_count

SELF_INSTRUCT_BLACKLIST = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to",
]
"""The Self-Instruct paper's words a language model cannot act on (Alpaca's script adds video, audio,
music, flowchart and diagram)."""

# Scripts written without spaces between words: each character counts as one word.
def _keyword_regex(words: list[str]) -> str:
    alts = sorted({r"\s+".join(map(re.escape, w.split())) for w in words if w.strip()}, key=len, reverse=True)
    return r"(?i)\b(" + "|".join(alts) + r")\b"


class HeuristicsFilter(Step):
    """Drop rows by simple rules; defaults are the Self-Instruct instruction filters."""

    type: Literal["filter.heuristics"]
    column: str = "instruction"
    """Text column the instruction rules (word bounds, blacklist, prefixes, first character) look at."""
    min_words: int | None = Field(default=4, ge=0)
    """Drop texts with fewer words than this (`too_short`; the paper drops 3 words or fewer); null turns
    the rule off."""
    max_words: int | None = Field(default=150, ge=1)
    """Drop texts with more words than this (`too_long`); null turns the rule off."""
    blacklist: list[str] = Field(default_factory=lambda: list(SELF_INSTRUCT_BLACKLIST))
    """Whole words/phrases (case-insensitive) a language model cannot act on (`blacklist:WORD`)."""
    forbidden_prefixes: list[str] = Field(default_factory=lambda: ["Write a program"])
    """Drop texts starting with any of these, ignoring case (`forbidden_prefix`)."""
    drop_leading_punctuation: bool = True
    """Drop texts whose first character is punctuation or a symbol in any script (`leading_punctuation`)."""
    drop_non_ascii_start: bool = True
    """Drop texts whose first character is not ASCII (`non_ascii_start`); turn off for non-English data."""
    dedup: Literal["none", "exact", "normalized"] = "normalized"
    """Drop repeats (`duplicate`, detail = id of the kept copy): `exact` compares raw values,
    `normalized` compares NFKC text with whitespace collapsed (and case folded if `dedup_ignore_case`)."""
    dedup_columns: list[str] | None = None
    """Columns whose combined value must be unique; default: just `column`."""
    dedup_ignore_case: bool = False
    """With `dedup: normalized`, also ignore letter case."""
    min_chars: dict[str, int] = Field(default_factory=dict)
    """Per-column minimum length in characters, e.g. `{output: 1}` (`min_length:COLUMN`)."""
    max_chars: dict[str, int] = Field(default_factory=dict)
    """Per-column maximum length in characters (`max_length:COLUMN`)."""
    keep_regex: dict[str, str] = Field(default_factory=dict)
    """Per-column regex a row must match somewhere to be kept (`regex_keep:COLUMN`)."""
    drop_regex: dict[str, str] = Field(default_factory=dict)
    """Per-column regex; rows matching it are dropped (`regex_drop:COLUMN`)."""

    kind_version = "2"  # 2: the paper's defaults (min_words 4, its 13-word blacklist)

    @field_validator("keep_regex", "drop_regex")
    @classmethod
    def _compiles(cls, v: dict[str, str]) -> dict[str, str]:
        for col, pattern in v.items():
            try:  # polars' (Rust) regex syntax: no look-around or back-references
                pl.Series([""]).str.contains(pattern)
            except pl.exceptions.ComputeError as e:
                why = next((ln for ln in str(e).splitlines() if ln.startswith("error:")), str(e))
                raise ValueError(f"{col}: not a valid regex ({why.removeprefix('error:').strip()})") from None
        return v

    def required_columns(self) -> list[str]:
        cols = [self.column, *(self.dedup_columns or []), *self.min_chars, *self.max_chars,
                *self.keep_regex, *self.drop_regex]
        return list(dict.fromkeys(cols))

    def reasons(self, df: pl.DataFrame) -> pl.DataFrame:
        """`df` with `_reason`, `_score` and `_detail` columns (null reason = kept)."""
        # Expensive per-row values are computed once into helper columns; the rule chains only compare them.
        first: dict[str, pl.Expr] = {"_t": normalized(pl.col(self.column).cast(pl.Utf8))}
        for i, col in enumerate(self.min_chars):
            first[f"_min{i}"] = normalized(pl.col(col).cast(pl.Utf8)).str.len_chars()
        for i, col in enumerate(self.max_chars):
            first[f"_max{i}"] = normalized(pl.col(col).cast(pl.Utf8)).str.len_chars()
        for i, (col, pattern) in enumerate(self.keep_regex.items()):
            first[f"_keep{i}"] = pl.col(col).cast(pl.Utf8).fill_null("").str.contains(pattern)
        for i, (col, pattern) in enumerate(self.drop_regex.items()):
            first[f"_drop{i}"] = pl.col(col).cast(pl.Utf8).fill_null("").str.contains(pattern)
        text = pl.col("_t")
        second: dict[str, pl.Expr] = {"_w": word_count(text), "_first": text.str.slice(0, 1)}
        if self.blacklist:
            second["_kw"] = (text.str.extract(_keyword_regex(self.blacklist), 1).str.to_lowercase()
                             .str.replace_all(r"\s+", " "))
        if self.forbidden_prefixes:
            second["_folded"] = text.str.to_lowercase()
        marked = df.with_columns(**first).with_columns(**second)

        words, first_char = pl.col("_w"), pl.col("_first")
        rules: list[tuple[pl.Expr, pl.Expr, pl.Expr | None, pl.Expr | None]] = []  # cond, reason, score, detail
        rules.append((text == "", pl.lit("empty"), None, None))
        if self.min_words is not None:
            rules.append((words < self.min_words, pl.lit("too_short"), words, None))
        if self.max_words is not None:
            rules.append((words > self.max_words, pl.lit("too_long"), words, None))
        if self.blacklist:
            hit = pl.col("_kw")
            rules.append((hit.is_not_null(), pl.lit("blacklist:") + hit, None, hit))
        for prefix in self.forbidden_prefixes:
            folded_prefix = normalized(pl.lit(prefix)).str.to_lowercase()
            rules.append((pl.col("_folded").str.starts_with(folded_prefix), pl.lit("forbidden_prefix"), None,
                          pl.lit(prefix)))
        if self.drop_leading_punctuation:
            rules.append((first_char.str.contains(r"^[\p{P}\p{S}]"), pl.lit("leading_punctuation"), None, first_char))
        if self.drop_non_ascii_start:
            rules.append((first_char.str.contains(r"^[^\x00-\x7F]"), pl.lit("non_ascii_start"), None, first_char))
        for i, (col, n) in enumerate(self.min_chars.items()):
            rules.append((pl.col(f"_min{i}") < n, pl.lit(f"min_length:{col}"), pl.col(f"_min{i}"), None))
        for i, (col, n) in enumerate(self.max_chars.items()):
            rules.append((pl.col(f"_max{i}") > n, pl.lit(f"max_length:{col}"), pl.col(f"_max{i}"), None))
        for i, col in enumerate(self.keep_regex):
            rules.append((~pl.col(f"_keep{i}"), pl.lit(f"regex_keep:{col}"), None, None))
        for i, col in enumerate(self.drop_regex):
            rules.append((pl.col(f"_drop{i}"), pl.lit(f"regex_drop:{col}"), None, None))

        # Each rule's condition is evaluated once into a column that the three chains below share
        # (eager polars does not share common subexpressions; on a generator's small batches that counts).
        marked = marked.with_columns(**{f"_c{i}": rule[0] for i, rule in enumerate(rules)})
        rules = [(pl.col(f"_c{i}"), *rule[1:]) for i, rule in enumerate(rules)]

        def chain(pick):
            expr = None
            for rule in rules:
                value = pick(rule)
                value = pl.lit(None) if value is None else value
                expr = pl.when(rule[0]).then(value) if expr is None else expr.when(rule[0]).then(value)
            return expr.otherwise(None)

        out = marked.with_columns(
            chain(lambda r: r[1]).cast(pl.Utf8).alias("_reason"),
            chain(lambda r: r[2]).cast(pl.Float64).alias("_score"),
            chain(lambda r: r[3]).cast(pl.Utf8).alias("_detail"),
        ).select(*df.columns, "_reason", "_score", "_detail")
        return self._dedup(out)

    def _dedup(self, df: pl.DataFrame) -> pl.DataFrame:
        if self.dedup == "none":
            return df
        cols = self.dedup_columns or [self.column]
        if self.dedup == "exact":
            keys = [pl.col(c).cast(pl.Utf8).fill_null("\x00") for c in cols]
        else:
            keys = [normalized(pl.col(c).cast(pl.Utf8)) for c in cols]
            if self.dedup_ignore_case:
                keys = [k.str.to_lowercase() for k in keys]
        key = pl.concat_str(keys, separator="\x1f")
        df = df.with_columns(key.alias("_key"), pl.int_range(pl.len()).alias("_pos"))
        alive = df.filter(pl.col("_reason").is_null())
        first = alive.group_by("_key").agg(pl.col(ID).first().alias("_first_id"), pl.col("_pos").first().alias("_fpos"))
        df = df.join(first, on="_key", how="left", maintain_order="left")
        dup = pl.col("_reason").is_null() & (pl.col("_pos") != pl.col("_fpos"))
        return df.with_columns(
            pl.when(dup).then(pl.lit("duplicate")).otherwise(pl.col("_reason")).alias("_reason"),
            pl.when(dup).then(pl.col("_first_id")).otherwise(pl.col("_detail")).alias("_detail"),
        ).drop("_key", "_pos", "_first_id", "_fpos")

    def is_row_wise(self) -> bool:
        return self.dedup == "none"  # every other rule looks at the row alone; dedup compares rows

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        df = inputs[0]
        fields = {c: f for f in ("drop_regex", "keep_regex", "max_chars", "min_chars")
                  for c in getattr(self, f)}
        if self.dedup != "none":
            fields.update({c: "dedup_columns" for c in self.dedup_columns or []})
        check_text_columns(self.id, df, {**fields, self.column: "column"})
        marked = self.reasons(df)
        dropped = marked.filter(pl.col("_reason").is_not_null())
        kept = marked.filter(pl.col("_reason").is_null()).select(df.columns)
        rej = rejections_frame(dropped[ID].to_list(), dropped["_reason"].to_list(), dropped["_score"].to_list(),
                               dropped["_detail"].to_list())
        return StepResult(kept, rejections=rej)
