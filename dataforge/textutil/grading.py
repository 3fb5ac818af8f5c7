"""Grading responses against gold answers: the shared core of `transform.grade` and `generate.teacher_cot`.

`GradeSettings` holds the documented fields both step kinds take; `grade_all` extracts each response's
final answer (and the gold's, when golds are rationales), compares them with `equivalent`, and returns
one `Grade` per pair. Reasons: `match`, `mismatch`, `no_answer` (the response has no final answer; it is
a negative), `no_gold` (the gold has none; the row is neither positive nor negative, `label` is null).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from dataforge.textutil.answers import check_pattern, extract
from dataforge.textutil.equivalence import equivalent

GRADE_COLUMNS = ("gold_answer", "correct", "label", "grade_reason")
"""Columns every grading step adds besides the extracted answer's column."""


@dataclass(frozen=True)
class Grade:
    answer: str | None
    """The response's extracted final answer (None: it has none)."""
    gold_answer: str | None
    """The gold answer compared against (extracted from the gold when it is a rationale)."""
    correct: bool
    label: str | None
    """`positive`, `negative`, or None when the gold has no answer."""
    reason: str
    """`match`, `mismatch`, `no_answer` or `no_gold`."""


class GradeSettings(BaseModel):
    """How a final answer is found and compared (fields shared by the grading step kinds)."""

    model_config = ConfigDict(extra="forbid")

    extractor: Literal["gsm8k", "boxed", "answer_is", "last_number", "regex"] = "gsm8k"
    """How the final answer is found in a response: `gsm8k` (first `#### n`, else the last number), `boxed` (last
    `\\boxed{...}`/`\\fbox{...}`, nested braces included), `answer_is` ("The answer is ..."), `last_number`,
    `regex` (give `pattern`)."""
    pattern: str | None = None
    """`extractor: regex` only: the answer is group `answer` if named, else group 1, else the whole match
    (last match wins)."""
    gold_is_rationale: bool = False
    """True when the gold column holds worked solutions (GSM8K `answer`, MATH `solution`): the gold answer is
    extracted from it with the same extractor. False: the gold column is the answer itself."""

    @model_validator(mode="after")
    def _pattern_fits(self) -> "GradeSettings":
        if self.extractor == "regex":
            if self.pattern is None:
                raise ValueError("extractor: regex needs `pattern`")
            check_pattern(self.pattern)
        elif self.pattern is not None:
            raise ValueError(f"`pattern` is only used with extractor: regex (this step uses {self.extractor!r})")
        return self

    def grading(self) -> "GradeSettings":
        """These settings alone (for a step model that inherits them)."""
        return GradeSettings(extractor=self.extractor, pattern=self.pattern, gold_is_rationale=self.gold_is_rationale)


def gold_answer(gold: object, settings: GradeSettings) -> str | None:
    """The answer a gold value stands for, or None when it has none."""
    if gold is None:
        return None
    text = str(gold).strip()
    if settings.gold_is_rationale:
        return extract(text, settings.extractor, settings.pattern)
    return text or None


def grade_one(response: str | None, gold: str | None, settings: GradeSettings) -> Grade:
    """Grade one response against an already extracted gold answer (see `gold_answer`)."""
    answer = extract(response, settings.extractor, settings.pattern) if response is not None else None
    if gold is None:
        return Grade(answer, None, False, None, "no_gold")
    if answer is None:
        return Grade(None, gold, False, "negative", "no_answer")
    ok = _equivalent(answer, gold)
    return Grade(answer, gold, ok, "positive" if ok else "negative", "match" if ok else "mismatch")


@functools.lru_cache(maxsize=65536)
def _equivalent(a: str, b: str) -> bool:
    return equivalent(a, b)


def grade_all(responses: Iterable[str | None], golds: Iterable[object], settings: GradeSettings) -> list[Grade]:
    """Grade each response against its gold (gold answers extracted once per distinct gold)."""
    cache: dict[object, str | None] = {}
    out = []
    for response, gold in zip(responses, golds):
        key = gold if isinstance(gold, (str, int, float, type(None))) else str(gold)
        if key not in cache:
            cache[key] = gold_answer(gold, settings)
        out.append(grade_one(response, cache[key], settings))
    return out
