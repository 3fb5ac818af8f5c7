"""Answer voting over k sampled rationales: self-consistency and adaptive (ranker-weighted) self-consistency.

Pure functions. Answers are grouped by *equivalence* (`1,000` and `1000`, `\\frac12` and `0.5` are one
answer), not by their raw strings. The gold answer seeds the first group, so "the vote picked the
gold answer" means "the winning group is gold's group". When several groups tie for the most votes
the question earns 1 / (size of the tie set) if gold's group is among them, else 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

Equivalent = Callable[[str, str], bool]

WEIGHTINGS: dict[str, Callable[[float], float]] = {
    "sc": lambda s: 1.0,
    "asc_1+2s": lambda s: 1.0 + 2.0 * s,
    "asc_1+s": lambda s: 1.0 + s,
    "asc_s": lambda s: s,
}
"""Vote weight of a sample given its ranker score s in [0, 1]: plain majority (`sc`) and the three
weightings of adaptive self-consistency."""

_TIE_EPS = 1e-9


@dataclass
class Question:
    """One question's votes: the gold answer, the k sampled answers (None: no answer found), their
    ranker scores (None without a ranker) and the greedy (temperature 0) answer: None when no greedy
    sample was drawn, `""` when it was drawn but has no answer."""

    gold: str
    answers: list[str | None]
    scores: list[float] | None = None
    greedy: str | None = None
    groups: list[int] = field(default_factory=list, repr=False)
    """Group of each sample (filled by `group_answers`): 0 is gold's group, -1 no answer."""


def group_answers(gold: str, answers: Sequence[str | None], equivalent: Equivalent) -> list[int]:
    """Group index per answer: 0 for answers equivalent to `gold`, then 1, 2, ... in order of first
    appearance; -1 for a missing answer. An answer joins the first group whose first member it equals."""
    reps: list[str] = [gold]
    out: list[int] = []
    for a in answers:
        if a is None or not str(a).strip():
            out.append(-1)
            continue
        for g, rep in enumerate(reps):
            if a == rep or equivalent(a, rep):
                out.append(g)
                break
        else:
            reps.append(a)
            out.append(len(reps) - 1)
    return out


def vote_credit(groups: Sequence[int], weights: Sequence[float]) -> float:
    """Credit of one question: 1 / |tie set| if group 0 (gold) has the largest total weight (ties
    included), else 0. No answered sample, or no positive total: 0."""
    totals: dict[int, float] = {}
    for g, w in zip(groups, weights, strict=True):
        if g >= 0:
            totals[g] = totals.get(g, 0.0) + float(w)
    if not totals:
        return 0.0
    best = max(totals.values())
    if best <= 0:
        return 0.0
    tied = [g for g, t in totals.items() if t >= best - _TIE_EPS * max(1.0, abs(best))]
    return 1.0 / len(tied) if 0 in tied else 0.0


def top_score_credit(groups: Sequence[int], scores: Sequence[float]) -> float:
    """Ranker accuracy of one question: the answer of the top-scored sample is gold's (samples tied at
    the top score share the credit: the fraction of them that are right)."""
    if not scores:
        return 0.0
    best = max(scores)
    top = [g for g, s in zip(groups, scores, strict=True) if s >= best - _TIE_EPS]
    return sum(1 for g in top if g == 0) / len(top)


def evaluate_votes(questions: Sequence[Question], equivalent: Equivalent) -> dict[str, float | int]:
    """Accuracies over questions: `sc`, `asc_1+2s`, `asc_1+s`, `asc_s` (when every question has scores),
    `ranker` (top-scored sample), `greedy` (when every question has a greedy answer), `any_correct`
    (an upper bound: some sample is right) and `questions`."""
    if not questions:
        raise ValueError("no questions to evaluate")
    with_scores = all(q.scores is not None for q in questions)
    with_greedy = all(q.greedy is not None for q in questions)
    sums: dict[str, float] = {"sc": 0.0, "any_correct": 0.0}
    if with_scores:
        sums.update({k: 0.0 for k in WEIGHTINGS if k != "sc"})
        sums["ranker"] = 0.0
    if with_greedy:
        sums["greedy"] = 0.0
    for q in questions:
        if q.scores is not None and len(q.scores) != len(q.answers):
            raise ValueError(f"{len(q.answers)} answers but {len(q.scores)} scores")
        q.groups = group_answers(q.gold, q.answers, equivalent)
        sums["sc"] += vote_credit(q.groups, [1.0] * len(q.groups))
        sums["any_correct"] += float(0 in q.groups)
        if with_scores:
            scores = [float(s) for s in q.scores]  # type: ignore[union-attr]
            if any(math.isnan(s) or s < 0 or s > 1 for s in scores):
                raise ValueError("ranker scores must lie in [0, 1]")
            for name, weight in WEIGHTINGS.items():
                if name != "sc":
                    sums[name] += vote_credit(q.groups, [weight(s) for s in scores])
            sums["ranker"] += top_score_credit(q.groups, scores)
        if with_greedy:
            sums["greedy"] += float(group_answers(q.gold, [q.greedy], equivalent)[0] == 0)
    n = len(questions)
    result: dict[str, float | int] = {k: v / n for k, v in sums.items()}
    result["questions"] = n
    return result
