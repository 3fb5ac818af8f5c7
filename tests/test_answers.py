"""Final-answer extraction and equivalence: hand-written cases, table-driven."""

from __future__ import annotations

import time

import pytest

from dataforge.textutil.answers import EXTRACTORS, check_pattern, extract
from dataforge.textutil.equivalence import answer_key, equivalent, expression, normalize, number
from dataforge.textutil.grading import GradeSettings, grade_one

# (text, extractor, expected answer or None)
EXTRACT = [
    # gsm8k: `#### n`, else the last number
    ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "gsm8k", "18"),
    ("So the total is 1,234.\n#### 1,234", "gsm8k", "1,234"),
    ("#### -7", "gsm8k", "-7"),
    ("He pays $5 then $7 more.\n#### $12", "gsm8k", "$12"),
    ("#### 3.5 hours", "gsm8k", "3.5"),
    ("#### 12\nextra text after with 99", "gsm8k", "12"),
    ("first #### 4\nProblem: an invented one\n#### 5", "gsm8k", "4"),
    ("She has 5 apples and buys 7 more, so 12 in all.", "gsm8k", "12"),
    ("The ducks lay many eggs and she sells them all.", "gsm8k", None),
    ("", "gsm8k", None),
    ("Total: 2 + 3 = 5.", "gsm8k", "5"),
    ("#### yes", "gsm8k", "yes"),
    # last_number
    ("Cost is $3.50 in total.", "last_number", "$3.50"),
    ("It was -4 degrees at night.", "last_number", "-4"),
    ("Between 2-3 people came.", "last_number", "3"),
    ("Half of it is 3/4 of a cup.", "last_number", "3/4"),
    ("We need 1,000,000 grains.", "last_number", "1,000,000"),
    ("The value .5 is small", "last_number", ".5"),
    ("version v2 of x3", "last_number", None),
    ("Nothing numeric here.", "last_number", None),
    ("It ends at 42.", "last_number", "42"),
    # boxed, nested braces included
    (r"so the answer is $\boxed{\frac{1}{2}}$.", "boxed", r"\frac{1}{2}"),
    (r"\boxed{1} first, then \boxed{2}", "boxed", "2"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", "boxed", r"\frac{\sqrt{3}}{2}"),
    (r"\fbox{a{b}c}", "boxed", "a{b}c"),
    (r"$\boxed 5$", "boxed", "5"),
    (r"\boxed{\{1, 2\}}", "boxed", r"\{1, 2\}"),
    (r"\boxed{unbalanced", "boxed", None),
    ("no box at all, 42", "boxed", None),
    (r"\boxed{ 7 }", "boxed", "7"),
    (r"\boxed{\text{(B)}}", "boxed", r"\text{(B)}"),
    # answer_is
    ("Step by step... The answer is 42. Next question", "answer_is", "42"),
    ("so the final answer is 3.5.", "answer_is", "3.5"),
    (r"The answer is $\frac{1}{2}$.", "answer_is", r"\frac{1}{2}"),
    (r"The answer is \boxed{-3}.", "answer_is", "-3"),
    ("Answer: Paris", "answer_is", "Paris"),
    ("the answer is $18.", "answer_is", "$18"),
    ("I think it is about 5.", "answer_is", None),
    ("The answer is 1. Wait, the answer is 2.", "answer_is", "2"),
    # a number that a clause follows is the answer; units and plain expressions stay as written
    ("So the answer is 12, since she has 3 boxes.", "answer_is", "12"),
    ("The answer is 12 because 3 * 4 = 12.", "answer_is", "12"),
    ("The answer is $1,200, as computed above.", "answer_is", "$1,200"),
    ("The answer is 12 (3 boxes of 4).", "answer_is", "12"),
    ("The answer is $1,200 per month.", "answer_is", "$1,200 per month"),
    ("The answer is (1, 2).", "answer_is", "(1, 2)"),
    ("The answer is 5 - 3 = 2.", "answer_is", "5 - 3 = 2"),
    # any other answer loses the reason it gives
    ("So the answer is x = 5, since 2x = 10.", "answer_is", "x = 5"),
    ("The answer is 5%, since 1 in 20 fail.", "answer_is", "5%"),
    ("The answer is 12 dollars, since each costs 3.", "answer_is", "12 dollars"),
    ("The answer is Paris because it is the capital.", "answer_is", "Paris"),
    ("The answer is B, which names the mammal.", "answer_is", "B"),
    ("The answer is salt and pepper.", "answer_is", "salt and pepper"),
    ("The answer is the film Because I Said So.", "answer_is", "the film Because I Said So"),
    ("The answer is Paris, Because it is the capital.", "answer_is", "Paris"),
    ("The answer is as large as 7.", "answer_is", "as large as 7"),
    # ", as well as" joins a second part of the answer; it gives no reason
    ("The answer is salt, as well as pepper.", "answer_is", "salt, as well as pepper"),
    ("The answer is x = 2, as well as x = -2, since x^2 = 4.", "answer_is", "x = 2, as well as x = -2"),
    ("The answer is 2, as well as -2.", "answer_is", "2, as well as -2"),
]


def test_answer_is_followed_by_a_reason_grades_as_its_number():
    settings = GradeSettings(extractor="answer_is")
    assert grade_one("So the answer is 12, since she has 3 boxes.", "12", settings).label == "positive"
    assert grade_one("The answer is 12 because 3 * 4 = 12.", "12", settings).label == "positive"


@pytest.mark.parametrize("text,extractor,expected", EXTRACT)
def test_extract(text, extractor, expected):
    assert extract(text, extractor) == expected


def test_regex_extractor_uses_the_named_group_then_group_one_then_the_match():
    assert extract("Result = 5; Result = 9", "regex", r"Result = (?P<answer>\d+)") == "9"
    assert extract("x: 3 y: 4", "regex", r"y: (\d+)") == "4"
    assert extract("abc 17 def", "regex", r"\d+") == "17"
    assert extract("nothing", "regex", r"\d+") is None
    with pytest.raises(ValueError, match="needs a pattern"):
        extract("x", "regex")
    with pytest.raises(ValueError, match="several groups"):
        check_pattern(r"(a)(b)")
    with pytest.raises(ValueError, match="not a valid regex"):
        check_pattern(r"(a")


def test_unknown_extractor_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: gsm8k, boxed, answer_is, last_number, regex"):
        extract("x", "nope")
    assert EXTRACTORS == ("gsm8k", "boxed", "answer_is", "last_number", "regex")


# (a, b, equivalent?)
EQUIV = [
    # numbers
    ("1,000", "1000", True),
    ("1{,}000", "1000", True),
    ("1,000,000", "1000000", True),
    ("18.0", "18", True),
    ("18.00", "18", True),
    ("2.50", "2.5", True),
    ("+5", "5", True),
    ("-3", "-3.00", True),
    ("-3", "3", False),
    ("−4", "-4", True),
    ("50%", "50", True),
    (r"50\%", "50", True),
    ("0.5", "1/2", True),
    (".5", "0.5", True),
    ("3/4", "0.75", True),
    ("6/8", "3/4", True),
    ("1/3", "0.333", False),
    ("$18", "18", True),
    (r"\$18", "18", True),
    ("$1,250.00", "1250", True),
    ("18 dollars", "18", True),
    ("5 cm", "5", True),
    ("12 eggs", "13", False),
    ("12", "13", False),
    ("0", "-0", True),
    ("1e3", "1000", False),
    ("7", "7.", True),
    ("100", "10", False),
    # LaTeX fractions and roots
    (r"\frac{1}{2}", "0.5", True),
    (r"\dfrac{1}{2}", r"\frac{1}{2}", True),
    (r"\tfrac{3}{4}", "0.75", True),
    (r"\frac12", r"\frac{1}{2}", True),
    (r"\frac1{2}", "1/2", True),
    (r"-\frac{1}{2}", "-0.5", True),
    (r"\frac{-1}{2}", "-1/2", True),
    (r"\frac{1}{2}", r"\frac{1}{3}", False),
    (r"\boxed{\frac{1}{2}}", "0.5", True),
    (r"\sqrt3", r"\sqrt{3}", True),
    (r"\frac{\sqrt{3}}{2}", r"\sqrt{3}/2", True),
    (r"\frac{\sqrt3}{2}", r"\frac{\sqrt{3}}{2}", True),
    (r"\sqrt{12}", r"2\sqrt{3}", True),
    (r"\sqrt{2}", "1.414", False),
    (r"\frac{\pi}{2}", r"\pi/2", True),
    (r"2\pi", r"\pi \cdot 2", True),
    (r"\sqrt[3]{8}", "2", True),
    ("a/b", r"\frac{a}{b}", True),
    ("a/b", r"\frac{b}{a}", False),
    # LaTeX noise, units, assignments
    (r"\left(1, 2\right)", "(1,2)", True),
    (r"(1, \frac{1}{2})", "(1, 0.5)", True),
    ("(1, 2)", "(2, 1)", False),
    (r"90^\circ", "90", True),
    (r"90^{\circ}", "90", True),
    ("90°", "90", True),
    (r"5\text{ cm}", "5", True),
    (r"12\mbox{ inches}", "12", True),
    (r"\text{Monday}", "monday", True),
    (r"3\!000", "3000", True),
    ("x = 5", "5", True),
    ("x=5", "6", False),
    ("k = -2", "-2", True),
    ("1 2", "12", True),
    (r"$\frac{1}{2}$", "0.5", True),
    (r"\(\frac{3}{2}\)", "1.5", True),
    # expressions
    ("2x+1", "1+2x", True),
    ("(x+1)^2", "x^2+2x+1", True),
    ("x^2-1", "(x-1)(x+1)", True),
    ("x^2+1", "(x+1)^2", False),
    ("2+3", "5", True),
    (r"2 \times 3", "6", True),
    (r"10 \div 4", r"\frac{5}{2}", True),
    # text answers
    ("Yes", "yes", True),
    (r"\text{(B)}", "(b)", True),
    ("Paris", "London", False),
    # no answer
    (None, "5", False),
    ("5", None, False),
    (None, None, False),
]


@pytest.mark.parametrize("a,b,expected", EQUIV)
def test_equivalent(a, b, expected):
    assert equivalent(a, b) is expected
    assert equivalent(b, a) is expected


@pytest.mark.parametrize("a,b,expected", [c for c in EQUIV if c[0] is not None and c[1] is not None])
def test_equal_keys_mean_equivalent_and_equivalent_numbers_share_a_key(a, b, expected):
    if answer_key(a) == answer_key(b):
        assert expected
    if expected and number(a) is not None and number(b) is not None:
        assert answer_key(a) == answer_key(b)


def test_keys_group_a_vote():
    votes = ["18", "$18", "18.0", "#### 18", "17", r"\boxed{18}", "eighteen"]
    keys = [answer_key(extract(v, "last_number") or v) for v in votes]
    assert keys.count("18") == 5
    assert answer_key(None) == ""
    assert answer_key(r"\dfrac{2}{4}") == answer_key("0.5") == "1/2"
    assert answer_key("(x+1)^2") == answer_key("x^2+2x+1")


def test_normalize_and_number():
    assert normalize(r"\left( \dfrac12 \right)") == r"(\frac{1}{2})"
    assert normalize(r"\$1,000.00") == "1000"
    assert number("1,000") == 1000
    assert number(r"\frac{3}{0}") is None
    assert number("3/0") is None
    assert number("abc") is None


@pytest.mark.parametrize("hostile", [
    "2^{99999999}",
    "9^9^9^9",
    r"\sqrt{" * 50 + "2" + "}" * 50,
    "(" * 500 + "1" + ")" * 500,
    "1" * 5000,
    "x^{x^{x^{x}}}",
    "(x+1)^{1000}",
    "1+" * 300 + "1",
], ids=lambda s: s[:20])
def test_pathological_answers_are_refused_quickly(hostile):
    t0 = time.perf_counter()
    assert not equivalent(hostile, "3")
    answer_key(hostile)
    assert time.perf_counter() - t0 < 2.0


def test_expression_parser_never_evaluates_python():
    assert expression("__import__('os').system('echo hi')") is None
    assert expression("lambda: 1") is None


from fractions import Fraction  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(1, 64))
def test_every_spelling_of_a_number_is_equivalent_and_shares_its_key(num, den):
    v = Fraction(num, den)
    sign = "-" if v < 0 else ""
    a, b = abs(v).numerator, abs(v).denominator
    spellings = [f"{sign}{a}/{b}", rf"{sign}\frac{{{a}}}{{{b}}}", rf"{sign}\dfrac{{{a}}}{{{b}}}",
                 rf"\boxed{{{sign}\tfrac{{{a}}}{{{b}}}}}"]
    if b == 1:
        n = int(v)
        spellings += [f"{n:,}", f"{sign}${a:,}", f"{n}.0", f"{n} apples", f"x = {n}"]
    key = answer_key(spellings[0])
    for s in spellings:
        assert equivalent(s, spellings[0]), s
        assert answer_key(s) == key, s
    assert not equivalent(spellings[0], str(v + 1))
