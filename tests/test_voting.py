"""Vote arithmetic of self-consistency and adaptive self-consistency (pure functions, hand-computed cases)."""

import pytest

from dataforge.train.voting import Question, evaluate_votes, group_answers, top_score_credit, vote_credit


def exact(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def test_groups_start_with_gold_and_skip_missing_answers():
    assert group_answers("7", ["3", "7", None, "3", "", "9", " 7"], exact) == [1, 0, -1, 1, -1, 2, 0]


def test_majority_vote_credit():
    assert vote_credit([0, 0, 1], [1, 1, 1]) == 1.0
    assert vote_credit([0, 1, 1], [1, 1, 1]) == 0.0
    assert vote_credit([-1, -1], [1, 1]) == 0.0  # no answer at all
    assert vote_credit([], []) == 0.0


def test_ties_give_one_over_tie_size_when_gold_is_among_them():
    assert vote_credit([0, 1], [1, 1]) == 0.5
    assert vote_credit([0, 1, 2], [1, 1, 1]) == pytest.approx(1 / 3)
    assert vote_credit([0, 1, 1, 2, 2], [1, 1, 1, 1, 1]) == 0.0  # tie between two wrong answers
    assert vote_credit([0, 0, 1, 1, 2], [1, 1, 1, 1, 1]) == 0.5  # gold ties with one, beats the third


def test_weights_can_overturn_the_majority():
    # Two wrong samples with low scores, one right sample with a high score.
    groups, s = [1, 1, 0], [0.1, 0.1, 0.9]
    assert vote_credit(groups, [1, 1, 1]) == 0.0  # majority: wrong
    assert vote_credit(groups, [1 + 2 * x for x in s]) == 1.0  # wrong 2.4, right 2.8
    assert vote_credit(groups, [1 + x for x in s]) == 0.0  # wrong 2.2, right 1.9
    assert vote_credit(groups, s) == 1.0  # wrong 0.2, right 0.9


def test_top_score_credit_shares_ties():
    assert top_score_credit([1, 0, 2], [0.2, 0.9, 0.5]) == 1.0
    assert top_score_credit([1, 0, 2], [0.9, 0.2, 0.5]) == 0.0
    assert top_score_credit([1, 0, 0, 2], [0.8, 0.8, 0.8, 0.1]) == pytest.approx(2 / 3)


def test_evaluate_votes_over_questions():
    qs = [
        # majority right, and under every weighting; the top-scored sample is wrong; greedy right
        Question(gold="4", answers=["4", "4", "5"], scores=[0.6, 0.6, 0.9], greedy="4"),
        # majority wrong; the ranker prefers the right one: s (0.9 vs 0) and 1+2s (2.8 vs 2.0) right,
        # 1+s wrong (1.9 vs 2.0)
        Question(gold="10", answers=["12", "12", "10"], scores=[0.0, 0.0, 0.9], greedy="12"),
        # right and wrong tie under every weighting; the top-scored sample has no answer; greedy has none
        Question(gold="3", answers=["3", "8", None], scores=[0.5, 0.5, 1.0], greedy=""),
    ]
    m = evaluate_votes(qs, exact)
    assert m["questions"] == 3
    assert m["sc"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["asc_s"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["asc_1+s"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert m["asc_1+2s"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["ranker"] == pytest.approx((0 + 1 + 0) / 3)
    assert m["greedy"] == pytest.approx(1 / 3)
    assert m["any_correct"] == 1.0


def test_evaluate_votes_without_scores_or_greedy_reports_sc_only():
    m = evaluate_votes([Question(gold="1", answers=["1", "2", "1"])], exact)
    assert m == {"sc": 1.0, "any_correct": 1.0, "questions": 1}


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="scores"):
        evaluate_votes([Question(gold="1", answers=["1", "2"], scores=[0.5])], exact)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_votes([Question(gold="1", answers=["1"], scores=[1.5])], exact)
