"""`dataforge eval` end to end with a scripted model (known samples -> known votes), the transformers
backend on a tiny random model (mechanics and the call-log cache), and bad options."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dataforge.train.evaluate as evaluate
from dataforge import api
from dataforge.llm.config import LLMConfig
from dataforge.llm.providers.base import Provider
from dataforge.llm.types import Completion
from dataforge.train import answers
from dataforge.train.voting import Question, evaluate_votes

# question marker -> k = 3 samples, then the greedy answer
SCRIPT = {
    "apples": ["He has 1,000 apples. The answer is 1,000.", "So 1000 in all. The answer is 1000.",
               "The answer is 999.", "The answer is 1000.0."],
    "half": ["The answer is 0.5.", "Half of one is \\frac{1}{2}. The answer is \\frac{1}{2}.",
             "The answer is 2.", "The answer is 1/2."],
    "seven": ["The answer is 7.", "The answer is 8.", "I am not sure.", "The answer is 8."],
}
SCORES = {"The answer is 2.": 0.9, "The answer is 0.5.": 0.1, "Half of one": 0.1, "The answer is 7.": 0.9,
          "The answer is 8.": 0.2, "I am not sure.": 0.95}


class Scripted(Provider):
    name = "scripted"

    def __init__(self) -> None:
        super().__init__(LLMConfig())
        self.calls = 0

    async def complete(self, r):
        self.calls += 1
        text = r.messages[-1].content
        samples = next(v for k, v in SCRIPT.items() if k in text)
        return Completion(text=samples[r.sample_index] if r.temperature > 0 else samples[-1], output_tokens=7)


class FakeRanker:
    def score(self, questions, rationales, **_):
        return np.array([next((v for k, v in SCORES.items() if r.startswith(k)), 0.5) for r in rationales])


@pytest.fixture
def questions(write, catalog, cli):
    recipe = write("q.yaml", """
        name: qa
        steps:
          - id: src
            type: source.inline
            rows:
              - {question: "How many apples are there?", answer: "1000"}
              - {question: "What is half of one?", answer: "\\\\frac12"}
              - {question: "What is three plus four, seven?", answer: "7"}
        outputs:
          qa: src
        """)
    assert cli("build", recipe, "--catalog", catalog).exit_code == 0
    return catalog


def test_equivalent_answers_vote_together():
    assert answers.equivalent("1,000", "1000") and answers.equivalent("\\frac12", "0.5")
    q = Question(gold="\\frac12", answers=["0.5", "\\frac{1}{2}", "2"])
    assert evaluate_votes([q], answers.equivalent)["sc"] == 1.0
    # Compared as raw strings no sample is gold's answer, and the vote scores nothing.
    assert evaluate_votes([q], lambda a, b: a == b)["sc"] == 0.0
    q = Question(gold="1000", answers=["1,000", "1000", "999", "999"])
    assert evaluate_votes([q], answers.equivalent)["sc"] == 0.5  # 1,000 + 1000 tie with 999 x 2


def test_eval_with_scripted_samples_and_ranker(questions, tmp_path, monkeypatch, cli):
    prov = Scripted()
    monkeypatch.setattr(evaluate, "_provider_and_label", lambda cfg: (prov, "scripted", "scripted-model",
                                                                      {"model": "scripted"}))
    monkeypatch.setattr("dataforge.train.ranker.Ranker.load", classmethod(lambda cls, path, device=None: FakeRanker()))
    out = tmp_path / "eval.json"
    r = cli("eval", "qa", "--k", "3", "--extractor", "answer_is", "--ranker", tmp_path, "--out", out,
            "--catalog", questions)
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())["metrics"]
    assert m["questions"] == 3
    assert m["sc"] == pytest.approx((1 + 1 + 0.5) / 3)  # 1,000 = 1000; 0.5 = \frac{1}{2}; 7 ties with 8
    assert m["greedy"] == pytest.approx(2 / 3)  # 1000.0 right, 1/2 right, 8 wrong
    assert m["asc_s"] == pytest.approx((1 + 0 + 1) / 3)  # half: 0.1 + 0.1 < 0.9
    assert m["asc_1+s"] == pytest.approx(1.0)  # half: 2.2 > 1.9
    assert m["asc_1+2s"] == pytest.approx(2 / 3)  # half: 2.4 < 2.8
    assert m["ranker"] == pytest.approx((2 / 3 + 0 + 0) / 3)  # apples: three-way tie at 0.5, two right
    assert m["any_correct"] == 1.0
    assert prov.calls == 3 * 4
    assert "sc: 0.8333" in r.output and "asc_1+s: 1.0000" in r.output

    res = json.loads(out.read_text())
    assert res["questions"][1]["answers"] == ["0.5", "\\frac{1}{2}", "2"] and res["questions"][1]["groups"] == [0, 0, 1]
    runs = json.loads(cli("sql", "select kind, method, status, metrics from runs", "--format", "json",
                          "--catalog", questions).output)
    assert [(x["kind"], x["method"], x["status"]) for x in runs] == [("eval", "vote", "done")]
    assert json.loads(runs[0]["metrics"])["sc"] == m["sc"]

    # A rerun answers every request from the call log.
    r = cli("eval", "qa", "--k", "3", "--extractor", "answer_is", "--catalog", questions)
    assert r.exit_code == 0, r.output
    assert prov.calls == 12
    assert "sc: 0.8333" in r.output and "asc_s" not in r.output  # no ranker: no ASC


def test_the_runs_record_counts_the_time_the_eval_took_model_loading_included(questions, tmp_path, monkeypatch):
    # `runs.wall_seconds` began after the model had loaded: 33.5 s recorded for an eval that printed 45.7 s.
    import time

    def slow_load(cfg):
        time.sleep(1.5)
        return Scripted(), "scripted", "scripted-model", {"model": "scripted"}

    monkeypatch.setattr(evaluate, "_provider_and_label", slow_load)
    cfg = evaluate.EvalConfig(data="qa", k=1, extractor="answer_is")
    res = evaluate.run_eval(cfg, catalog=questions)
    wall = api.sql(f"select wall_seconds from runs where run_id = '{res['run_id']}'", catalog=questions).item()
    assert wall >= 1.5 and abs(wall - res["seconds"]) < 0.5


def test_transformers_backend_samples_k_and_caches(questions, tmp_path, cli):
    pytest.importorskip("transformers")
    from tiny_lm import save_tiny

    model = save_tiny(tmp_path / "tiny")
    args = ["eval", "qa", "--model", model, "--k", "2", "--max-tokens", "3", "--style", "completion",
            "--prompt", "Input : {{ question }} Answer :", "--catalog", questions, "--out", tmp_path / "e.json"]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["calls"]["requests"] == 3 * 3 and res["calls"]["called"] == 9
    assert all(len(q["answers"]) == 2 for q in res["questions"])
    assert res["model"]["weights"] and res["model"]["device"] == "cpu"
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e.json").read_text())["calls"]["cached"] == 9


@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "--k: Input should be greater than or equal to 1"),
    (["--extractor", "nope"], "--extractor: unknown extractor 'nope'"),
    (["--prompt", "{{ question"], "--prompt: template syntax error"),
    (["--style", "poem"], "--style: Input should be 'chat' or 'completion'"),
    (["--gold-column", "solution"], "no column 'solution' (--gold-column)"),
    (["--ranker", "/nonexistent/ranker"], "/nonexistent/ranker: not a ranker directory"),
    (["--model", "/nonexistent/model.gguf"], "--model /nonexistent/model.gguf: no such file"),
    (["--prompt", "{{ nope }}"], "--prompt: row 0: template error: 'nope' is undefined"),
])
def test_bad_options_exit_2_before_any_call(questions, cli, args, message, monkeypatch):
    if "--prompt" in args and "nope" in args[1]:
        prov = Scripted()
        monkeypatch.setattr(evaluate, "_provider_and_label", lambda cfg: (prov, "scripted", "m", {}))
    r = cli("eval", "qa", *args, "--catalog", questions)
    assert r.exit_code == 2, r.output
    assert message in r.output
