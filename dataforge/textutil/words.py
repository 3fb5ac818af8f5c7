"""Text measures shared by filters and the report: normalisation and word counts (polars expressions)."""

from __future__ import annotations

import polars as pl

_UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
WORD_PATTERN = rf"[{_UNSPACED}]|[^\s{_UNSPACED}]+"
"""A word: a run of non-space characters, or one Han/kana/Hangul character (scripts written unspaced)."""


def normalized(expr: pl.Expr) -> pl.Expr:
    """NFKC form with runs of whitespace collapsed to one space and the ends stripped."""
    return expr.fill_null("").str.normalize("NFKC").str.replace_all(r"\s+", " ").str.strip_chars()


def word_count(expr: pl.Expr) -> pl.Expr:
    """Words in a text: whitespace-separated tokens, plus one per Han/kana/Hangul character."""
    return expr.str.count_matches(WORD_PATTERN).fill_null(0)
