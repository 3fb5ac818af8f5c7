"""`generate.classify` against a scripted OpenAI-wire server: balanced labels, proposed labels,
near-duplicate inputs dropped within a label, and label counts in SQL."""

from __future__ import annotations

import duckdb
import pytest

from dataforge import api
from servers.scripted_openai import ScriptedOpenAI

KEY = "DATAFORGE_TEST_CLF_KEY"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY, "sk-test")


def build(tmp_path, url, step: str):
    r = tmp_path / "r.yaml"
    r.write_text(f"""
name: clf-test
seed: 1
llm: {{provider: openai, model: m, base_url: "{url}/v1", api_key_env: {KEY}, max_concurrency: 4}}
steps:
  - id: tasks
    type: source.inline
    rows:
      - {{instruction: "Is the restaurant review positive or negative?"}}
      - {{instruction: "Say whether the sentence is a question or a statement."}}
  - id: gen
    type: generate.classify
{step}
outputs:
  out: gen
""")
    res = api.build(r, catalog=tmp_path / "c.duckdb")
    con = duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True)
    return res, con


def answer_inputs(prompt, body):
    label = prompt.rstrip("\n").rsplit("Class label:", 1)[1].strip()
    k = body.get("seed", 0) % len(TEXTS)
    return f"{TEXTS[k]} ({label})"


TEXTS = ["The soup arrived cold and nobody apologised", "Bright colours filled every corner of the market",
         "Could you tell me when the library opens tomorrow", "My brother finally fixed his old bicycle",
         "Thunder rolled over the hills before dawn", "We planted tulips along the fence last spring",
         "Which train goes to the airport fastest", "Grandma knits scarves for the whole family"]


def test_per_label_inputs_are_balanced_and_counted(tmp_path):
    with ScriptedOpenAI(answer_inputs) as s:
        res, con = build(tmp_path, s.url, "    labels: [\"Yes\", \"No\"]\n    per_label: 3")
        prompts = s.prompts()
    assert res.rows == {"out": 12}
    counts = con.execute("select label, count(*) from out group by label order by label").fetchall()
    assert counts == [("No", 6), ("Yes", 6)]
    assert all(p.endswith("Class label: Yes\n") or p.endswith("Class label: No\n") for p in prompts)
    assert all("Task: Is the restaurant review" in p or "Task: Say whether" in p for p in prompts)
    row = con.execute("select instruction, label, input from out limit 1").fetchone()
    assert row[0] and row[1] in ("Yes", "No") and row[2].endswith(f"({row[1]})")


def test_near_duplicate_inputs_within_a_label_are_rejected_with_their_text(tmp_path):
    with ScriptedOpenAI(lambda p, b: "The food was cold and the waiter ignored us all evening") as s:
        res, con = build(tmp_path, s.url, "    labels: [positive, negative]\n    per_label: 3")
    assert res.rows == {"out": 4}  # one per (task, label): the other samples repeat it
    rej = con.execute("select reason, score, detail from rejections").fetchall()
    assert len(rej) == 8 and {r[0] for r in rej} == {"rouge_l"} and all(r[1] == 1.0 for r in rej)
    assert rej[0][2].startswith("[positive] The food was cold") or rej[0][2].startswith("[negative] The food")


def test_labels_propose_asks_the_model_first(tmp_path):
    def answer(prompt, body):
        if prompt.rstrip().endswith("Class labels:"):
            return " Question, Statement, question." if "question" in prompt.rsplit("Task:", 1)[1] else " Good"
        return answer_inputs(prompt, body)

    with ScriptedOpenAI(answer) as s:
        res, con = build(tmp_path, s.url, "    labels: propose\n    per_label: 2")
    assert con.execute("select label, count(*) from out group by label order by label").fetchall() == \
        [("Question", 2), ("Statement", 2)]
    assert con.execute("select reason, detail from rejections").fetchall()[0][0] == "no_labels"


def test_an_answer_cut_by_max_tokens_on_anthropic_is_rejected_as_truncated(tmp_path, monkeypatch):
    # The Messages API reports a cut answer as stop_reason "max_tokens", not OpenAI's "length".
    from servers.anthropic_wire import AnthropicWireServer

    with AnthropicWireServer(api_key="sk-ant-test-" + "k" * 30) as s:
        monkeypatch.setenv("DATAFORGE_TEST_CLF_ANTHROPIC_KEY", s.api_key)
        r = tmp_path / "r.yaml"
        r.write_text(f"""
name: clf-anthropic
seed: 1
llm: {{provider: anthropic, model: claude-3-5-haiku, base_url: "{s.url}",
       api_key_env: DATAFORGE_TEST_CLF_ANTHROPIC_KEY}}
steps:
  - id: tasks
    type: source.inline
    rows:
      - {{instruction: "Is the restaurant review positive or negative?"}}
  - id: gen
    type: generate.classify
    labels: [positive, negative]
    per_label: 1
    sampling: {{max_tokens: 4}}
outputs:
  out: gen
""")
        res = api.build(r, catalog=tmp_path / "c.duckdb")
    con = duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True)
    assert con.execute("select distinct finish_reason from llm_calls").fetchall() == [("max_tokens",)]
    assert res.rows == {"out": 0}
    assert con.execute("select reason, count(*) from rejections group by all").fetchall() == [("truncated", 2)]
