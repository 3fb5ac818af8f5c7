"""`generate.teacher_cot` against a loopback OpenAI-wire server with scripted rationales: the positive /
negative split, all-wrong questions flagged, failed calls as rejections, prompts, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import duckdb
import polars as pl
import pytest

from conftest import paid_calls
from dataforge import api
from servers.answer_script import ScriptedOpenAIServer, ScriptError
from servers.fault_proxy import FaultPlan, FaultProxy

KEY_ENV = "DATAFORGE_TEST_OPENAI_KEY"
SEED = 100

# question marker -> (gold rationale, the answer of each sample: a number, None for no answer, "fail")
SCRIPT = {
    "Q0": ("3 + 4 = 7\n#### 7", ["7", "7", "8", None]),
    "Q1": ("#### 10", ["9", "11", "12", "1,000"]),
    "Q2": ("#### 1,000", ["1000", "fail", "$1,000", "999"]),
    "Q3": ("no final answer in this gold", ["1", "1", "1", "1"]),
}


def script(prompt: str, sample: int) -> str:
    marker = re.findall(r"\bQ\d+\b", prompt)[-1]  # the asked question comes last (after any exemplars)
    answer = SCRIPT[marker][1][sample % 4] if marker in SCRIPT else str(sample)
    if answer == "fail":
        raise ScriptError(400)
    if answer is None:
        return "I am not sure how to solve this one."
    return f"Let me add the numbers step by step.\n#### {answer}"


@pytest.fixture
def server(monkeypatch):
    with ScriptedOpenAIServer(script, base_seed=SEED) as s:
        monkeypatch.setenv(KEY_ENV, s.api_key)
        yield s


def recipe(url: str, questions: dict[str, str], *, step: str = "", llm: str = "", k: int = 4) -> str:
    rows = "\n".join(f"      - {{question: 'How many? {q}', answer: {g!r}}}" for q, g in questions.items())
    return f"""
name: cot-test
seed: {SEED}
llm:
  provider: openai
  model: teacher-1
  base_url: {url}/v1
  api_key_env: {KEY_ENV}
  max_concurrency: 2
  max_retries: 1
  retry_backoff_s: 0.01
{llm}
steps:
  - id: questions
    type: source.inline
    rows:
{rows}
  - id: cot
    type: generate.teacher_cot
    k: {k}
{step}
outputs:
  cot: cot
"""


def test_positives_negatives_all_wrong_and_rejections(server, write, catalog):
    path = write("r.yaml", recipe(server.url, {q: g for q, (g, _) in SCRIPT.items()}))
    res = api.build(path, catalog=catalog, quiet=True)
    assert res.status == "ok"
    df = api.read("cot", catalog=catalog).sort("question", "sample_index")
    by_q = {q: df.filter(pl.col("question").str.ends_with(q)) for q in SCRIPT}

    q0 = by_q["Q0"]
    assert q0["label"].to_list() == ["positive", "positive", "negative", "negative"]
    assert q0["grade_reason"].to_list() == ["match", "match", "mismatch", "no_answer"]
    assert q0["pred_answer"].to_list() == ["7", "7", "8", None]
    assert set(q0["n_positive"]) == {2} and set(q0["n_negative"]) == {2} and not q0["all_wrong"].any()

    q1 = by_q["Q1"]  # every sample wrong: kept, flagged
    assert q1.height == 4 and q1["all_wrong"].all() and set(q1["label"]) == {"negative"}

    q2 = by_q["Q2"]  # one call failed: three rows, the failure is a rejection
    assert q2["sample_index"].to_list() == [0, 2, 3]
    assert q2["label"].to_list() == ["positive", "positive", "negative"]
    assert set(q2["n_positive"]) == {2} and set(q2["n_negative"]) == {1}
    assert set(q2["gold_answer"]) == {"1,000"}

    assert by_q["Q3"].height == 0  # no gold answer: not asked
    assert all("Q3" not in r.json()["messages"][-1]["content"]
               for r in server.requests_to("POST", "/v1/chat/completions"))
    assert server.count("POST", "/v1/chat/completions") == 12

    rej = api.sql("select reason, detail from rejections where step_id = 'cot' order by reason, detail",
                  catalog=catalog)
    assert rej["reason"].to_list() == ["llm_error"] + ["no_gold"] * 4  # Q3's four samples were not asked
    assert rej["detail"][0].startswith("sample 1:") and "not asked" in rej["detail"][1]
    notes = api.sql("select notes from steps where step_id = 'cot'", catalog=catalog)["notes"][0]
    assert json.loads(notes) == {"positives": 4, "negatives": 7, "all_wrong_questions": 1}

    counts = api.sql("""select regexp_extract(question, 'Q\\d') q, count(*) filter (where label = 'positive') pos,
                               count(*) filter (where label = 'negative') neg, bool_and(all_wrong) all_wrong
                        from cot group by q order by q""", catalog=catalog)
    assert counts.rows() == [("Q0", 2, 2, False), ("Q1", 0, 4, True), ("Q2", 2, 1, False)]
    # lineage: every rationale points at its question row
    parents = api.sql("select count(distinct parent_id) n from lineage where step_id = 'cot'", catalog=catalog)
    assert parents["n"][0] == 3


def test_prompts_zero_shot_few_shot_override_and_completion_style(server, write, catalog):
    qs = {"Q0": SCRIPT["Q0"][0]}
    api.build(write("z.yaml", recipe(server.url, qs)), catalog=catalog, quiet=True)
    zero = server.requests_to("POST", "/v1/chat/completions")[-1].json()
    text = zero["messages"][-1]["content"]
    assert "Let's think step by step." in text and "#### <answer>" in text and "How many? Q0" in text
    assert zero["seed"] in range(SEED, SEED + 4)

    api.build(write("f.yaml", recipe(server.url, qs, step="    prompt_style: few_shot")), catalog=catalog, quiet=True)
    few = server.requests_to("POST", "/v1/chat/completions")[-1].json()["messages"][-1]["content"]
    assert few.count("Problem:") == 5 and "#### 40" in few and few.rstrip().endswith("Solution:")

    own = '    prompt: "Teacher, solve {{ question }} ({{ answer_instruction }})"\n    extractor: boxed\n' \
          '    gold_is_rationale: false'
    api.build(write("o.yaml", recipe(server.url, {"Q0": "7"}, step=own)), catalog=catalog, quiet=True)
    mine = server.requests_to("POST", "/v1/chat/completions")[-1].json()["messages"][-1]["content"]
    assert mine == "Teacher, solve How many? Q0 (Put the final answer in \\boxed{}.)"
    # the scripted answers write `#### 7`, which the boxed extractor does not read: all no_answer
    assert set(api.read("cot", catalog=catalog)["grade_reason"]) == {"no_answer"}

    before = server.count("POST", "/v1/completions")
    api.build(write("c.yaml", recipe(server.url, qs, step="    style: completion")), catalog=catalog, quiet=True)
    assert server.count("POST", "/v1/completions") - before == 4
    assert set(api.read("cot", catalog=catalog)["n_positive"]) == {2}


def test_rebuild_pays_nothing_twice(server, write, catalog):
    path = write("r.yaml", recipe(server.url, {"Q0": SCRIPT["Q0"][0], "Q1": SCRIPT["Q1"][0]}))
    api.build(path, catalog=catalog, quiet=True)
    first = api.read("cot", catalog=catalog).sort("id")
    sent = server.count("POST", "/v1/chat/completions")
    res = api.build(path, catalog=catalog, quiet=True, force=True)
    assert server.count("POST", "/v1/chat/completions") == sent == 8
    calls = api.sql(f"select status, count(*) n from llm_calls where build_id = '{res.build_id}' group by status",
                    catalog=catalog)
    assert dict(calls.iter_rows()) == {"cached": 8}
    assert api.read("cot", catalog=catalog).sort("id").equals(first)


def test_sigkill_then_rerun_makes_only_the_missing_calls(server, write, tmp_path):
    questions = {f"Q{10 + i}": f"#### {i}" for i in range(12)}  # the script answers sample s with `s`
    with FaultProxy(server.url, FaultPlan(), latency_s=0.1) as proxy:
        path = write("r.yaml", recipe(proxy.url, questions, k=2))
        cat = tmp_path / "killed.duckdb"
        env = {**os.environ, KEY_ENV: server.api_key}
        proc = subprocess.Popen([sys.executable, "-m", "dataforge.cli", "build", str(path), "--catalog", str(cat),
                                 "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + 60
        while paid_calls(cat) < 6:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "build too slow"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        logged = paid_calls(cat)
        assert 6 <= logged < 24

        rerun = subprocess.run([sys.executable, "-m", "dataforge.cli", "build", str(path), "--catalog", str(cat),
                                "--quiet"], capture_output=True, text=True, env=env, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        fresh = tmp_path / "fresh.duckdb"
        assert api.build(path, catalog=fresh, quiet=True).status == "ok"
    con = duckdb.connect(str(cat), read_only=True)
    last = con.sql("select status, count(*) n from llm_calls where build_id = (select max(build_id) from builds) "
                   "group by status").pl()
    assert dict(last.iter_rows()) == {"ok": 24 - logged, "cached": logged}
    ok = con.sql("select request_hash from llm_calls where status = 'ok'").pl()
    assert ok["request_hash"].n_unique() == ok.height == 24  # nothing paid twice over both builds
    con.close()
    resumed = api.read("cot", catalog=cat).sort("id")
    assert resumed.height == 24
    assert resumed.equals(api.read("cot", catalog=fresh).sort("id"))
    # sample s of every question answered `s`: sample 0 is right for gold 0 only, sample 1 for gold 1 only
    assert resumed.filter(pl.col("correct")).height == 2
