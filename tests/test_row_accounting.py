"""Every step kind, run on rows with nulls, duplicates and unicode, accounts for each input row:
it is kept (or made into output rows) or it is in `rejections` with a reason."""

from __future__ import annotations

import json

import pytest

from dataforge import api
from dataforge.steps.base import load_registry

ROWS = [
    {"text": "Explain how the tides work 🌊 in a few sentences", "label": "a"},
    {"text": "Explain how the tides work 🌊 in a few sentences", "label": "a"},  # an exact duplicate
    {"text": None, "label": "b"},
    {"text": "日本語の文を英語に翻訳してください", "label": "b"},
    {"text": "Write a program that draws a map of the city", "label": "a"},
    {"text": "Classify the sentiment of this short review", "label": None},
    {"text": "Summarize the plot of a novel about the sea", "label": "b"},
    {"text": "Explain how tides work in a few sentences", "label": "a"},  # a near duplicate
    {"text": "Name three rivers in South America\u200b", "label": "b"},
    {"text": "Give an example of a prime number greater than ten", "label": "a"},
]

# One configuration per step kind that takes input rows (sources have none to account for).
CASES: dict[str, dict] = {
    "filter.heuristics": {"column": "text"},
    "filter.rouge_l": {"column": "text", "threshold": 0.7},
    "filter.semantic": {"column": "text", "threshold": 0.9},
    "filter.verb_noun": {"column": "text", "max_per_pair": 1},
    "generate.prompt": {"prompt": "{{ text }}", "n": 2, "llm": {"provider": "openai", "model": "echo",
                                                                 "base_url": "URL", "max_retries": 0}},
    "generate.teacher_cot": {"question_column": "text", "gold_column": "label", "gold_is_rationale": False,
                             "extractor": "answer_is", "k": 2,
                             "llm": {"provider": "openai", "model": "echo", "base_url": "URL", "max_retries": 0}},
    "transform.flip": {"label_column": "label"},
    "transform.grade": {"response_column": "text", "gold_column": "label", "extractor": "last_number"},
    "transform.symbols": {"input_column": "text", "label_column": "label", "k": 1, "max_prompts_per_task": 4},
    "transform.prompt_completion": {"instruction_column": "text", "input_column": "label",
                                    "output_column": "label"},
    "transform.sql": {"from": "src", "query": "select * from src where label = 'a' or text is null",
                      "rejections": True},
    "transform.template": {"templates": {"*": [{"id": "t", "prompt": "Q: {{ text }}", "target": "{{ label }}"}]}},
}


# Generators whose output rows are new examples, not a function of each input row: they declare no
# expected count (their rejections are the candidates they made and dropped; their own tests cover them).
FREE = {"generate.self_instruct", "generate.classify"}


def test_every_kind_that_reads_rows_has_a_case():
    kinds = {name for name, cls in load_registry().items() if not cls.is_source and not name.startswith("test.")}
    assert kinds == set(CASES) | FREE, "add the new kind to CASES: it must account for its rows"
    for name in FREE:
        assert load_registry()[name].expected_rows.__qualname__ == "Step.expected_rows"


@pytest.fixture(scope="module")
def server():
    from servers.openai_batch import OpenAIBatchServer

    with OpenAIBatchServer() as s:
        s.fail_when("South America", 400)  # those calls fail: rejections, not a crash
        yield s


@pytest.mark.parametrize("kind", sorted(CASES))
def test_rows_in_equals_rows_out_plus_rejected(kind, write, catalog, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    params = json.loads(json.dumps(CASES[kind]).replace('"URL"', json.dumps(server.url + "/v1")))
    step = {"id": "step", "type": kind, **params}
    r = write("r.yaml", json.dumps({"name": "accounting", "seed": 3,
                                    "steps": [{"id": "src", "type": "source.inline", "rows": ROWS}, step],
                                    "outputs": {"out": "step"}}))
    res = api.build(r, catalog=catalog)
    built = next(s for s in res.steps if s.step_id == "step")
    assert built.rows_in == len(ROWS)
    cls = load_registry()[kind]
    expected = cls.model_validate(step).expected_rows(built.rows_in, built.rejected)
    assert expected is not None and built.rows_out == expected
    rej = api.sql("select row_id, reason from rejections where step_id = 'step'", catalog=catalog)
    assert rej.height == built.rejected and rej["reason"].null_count() == 0
    src_ids = set(api.sql("select id from _s_" + res.steps[0].fingerprint[:24], catalog=catalog)["id"])
    assert set(rej["row_id"]) <= src_ids  # a rejection names an input row
    if kind == "generate.prompt":
        assert set(rej["reason"]) == {"llm_error"} and built.rejected == 2  # both samples of one row
