"""`transform.grade`: responses labelled positive/negative against gold answers, through real builds."""

from __future__ import annotations

import json

import polars as pl

from dataforge import api


def _build(write, catalog, rows: list[dict], step: str = "") -> pl.DataFrame:
    src = "\n".join(f"      - {json.dumps(r)}" for r in rows)
    path = write("r.yaml", f"""
name: grade-test
steps:
  - id: src
    type: source.inline
    rows:
{src}
  - id: graded
    type: transform.grade
{step}
outputs:
  graded: graded
""")
    api.build(path, catalog=catalog, quiet=True)
    return api.read("graded", catalog=catalog).sort("n")


def test_plain_gold_answers(write, catalog):
    rows = [
        {"n": 0, "response": "3 + 4 = 7, so 7 apples.", "gold": "7"},
        {"n": 1, "response": "She pays $1,250.00 in all.", "gold": "1250"},
        {"n": 2, "response": "I get 12.", "gold": "13"},
        {"n": 3, "response": "I cannot tell from the text.", "gold": "5"},
        {"n": 4, "response": "So -3 degrees.", "gold": "-3"},
        {"n": 5, "response": "answer 8", "gold": ""},
    ]
    df = _build(write, catalog, rows, "    extractor: last_number")
    assert df["answer"].to_list() == ["7", "$1,250.00", "12", None, "-3", "8"]
    assert df["correct"].to_list() == [True, True, False, False, True, False]
    assert df["label"].to_list() == ["positive", "positive", "negative", "negative", "positive", None]
    assert df["grade_reason"].to_list() == ["match", "match", "mismatch", "no_answer", "match", "no_gold"]
    # the input's columns are kept, and SQL sees the labels
    assert set(df.columns) >= {"n", "response", "gold", "answer", "gold_answer", "correct", "label", "grade_reason"}
    counts = api.sql("select label, count(*) n from graded group by label order by label", catalog=catalog)
    assert dict(counts.iter_rows()) == {"negative": 2, "positive": 3, None: 1}


def test_gold_rationales_go_through_the_same_extractor(write, catalog):
    rows = [
        {"n": 0, "out": "Step one... #### 18", "sol": "16 - 3 - 4 = 9 and 9 * 2 = 18\n#### 18"},
        {"n": 1, "out": "#### 17", "sol": "It is 9 * 2 = 18.\n#### 18"},
        {"n": 2, "out": "So 1,000 in all.", "sol": "#### 1000"},
    ]
    df = _build(write, catalog, rows, "    response_column: out\n    gold_column: sol\n    gold_is_rationale: true\n"
                                      "    answer_column: predicted")
    assert df["predicted"].to_list() == ["18", "17", "1,000"]
    assert df["gold_answer"].to_list() == ["18", "18", "1000"]
    assert df["label"].to_list() == ["positive", "negative", "positive"]


def test_boxed_latex_answers(write, catalog):
    rows = [
        {"n": 0, "response": r"So $x = \boxed{\dfrac{1}{2}}$.", "gold": r"The answer is $\boxed{0.5}$."},
        {"n": 1, "response": r"Thus \boxed{2\sqrt{3}}", "gold": r"$\boxed{\sqrt{12}}$"},
        {"n": 2, "response": r"Thus \boxed{90^\circ}", "gold": r"\boxed{90}"},
        {"n": 3, "response": "no box here: 4", "gold": r"\boxed{4}"},
        {"n": 4, "response": r"\boxed{\frac{1}{3}}", "gold": r"\boxed{\frac{1}{4}}"},
    ]
    df = _build(write, catalog, rows, "    extractor: boxed\n    gold_is_rationale: true")
    assert df["grade_reason"].to_list() == ["match", "match", "match", "no_answer", "mismatch"]


def test_regex_extractor(write, catalog):
    rows = [{"n": 0, "response": "ANSWER=(B) because", "gold": "b"},
            {"n": 1, "response": "ANSWER=(C)", "gold": "B"}]
    df = _build(write, catalog, rows, r"""    extractor: regex
    pattern: 'ANSWER=\((?P<answer>[A-D])\)'""")
    assert df["answer"].to_list() == ["B", "C"]
    assert df["correct"].to_list() == [True, False]


def test_a_missing_gold_column_is_refused_before_running(write, catalog, cli):
    path = write("r.yaml", """
        name: grade-missing
        steps:
          - id: src
            type: source.inline
            rows: [{response: "7"}]
          - id: graded
            type: transform.grade
        outputs:
          graded: graded
        """)
    res = cli("build", path, "--catalog", catalog)
    assert res.exit_code == 2
    assert "r.yaml:6:5: steps[1].gold_column: " in res.output and "lacks column(s) 'gold'" in res.output
    assert not catalog.exists() or api.sql("select count(*) n from builds", catalog=catalog)["n"][0] == 0
