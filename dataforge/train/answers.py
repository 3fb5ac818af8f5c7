"""The generators' answer extraction and equivalence (`dataforge.textutil`), as evaluation uses them."""

from __future__ import annotations

import functools

from dataforge.textutil.answers import EXTRACTORS
from dataforge.textutil.answers import extract as _extract
from dataforge.textutil.equivalence import equivalent as _equivalent


def check_extractor(name: str) -> None:
    """Refuse an unknown extractor (regex extraction needs a pattern, which eval does not take)."""
    if name not in EXTRACTORS or name == "regex":
        raise ValueError(f"unknown extractor {name!r}; choose one of "
                         f"{', '.join(e for e in EXTRACTORS if e != 'regex')}")


def extract(text: str | None, extractor: str) -> str | None:
    """The final answer of a rationale, or None."""
    return _extract(text, extractor) if text is not None else None


def gold_answer(gold: object, extractor: str, is_rationale: bool) -> str | None:
    """The gold answer: the value itself, or (`is_rationale`, e.g. GSM8K's `answer` field that ends with
    `#### n`) the answer extracted from it like a sample's. None when there is none."""
    if gold is None or not str(gold).strip():
        return None
    text = str(gold).strip()
    return _extract(text, extractor) if is_rationale else text


@functools.lru_cache(maxsize=65536)
def equivalent(a: str, b: str) -> bool:
    """Do two answers mean the same (`1,000` and `1000`, `\\frac12` and `0.5`)?"""
    return _equivalent(a, b)
