"""`generate.self_instruct` against a scripted OpenAI-wire server: prompt sampling, parsing, every
heuristic and the ROUGE pool in `rejections` with the dropped text, truncation, both styles,
classification identification, instances, max_rounds, lineage, determinism and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from dataforge import api
from dataforge.steps.generate import self_instruct_parse as sip
from servers.fake_model import FakeModel
from servers.scripted_openai import ScriptedOpenAI

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "recipes" / "data" / "self_instruct_seeds.jsonl"
KEY = "DATAFORGE_TEST_SI_KEY"


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY, "sk-test")


def recipe(tmp_path: Path, url: str, step: str = "", *, model: str = "m", concurrency: int = 4) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(f"""
name: si-test
seed: 7
llm:
  provider: openai
  model: {model}
  base_url: {url}/v1
  api_key_env: {KEY}
  max_concurrency: {concurrency}
  retry_backoff_s: 0.01
steps:
  - id: seeds
    type: source.jsonl
    path: {SEEDS}
  - id: si
    type: generate.self_instruct
{step}
outputs:
  out: si
""")
    return p


def sql(cat: Path, q: str):
    con = duckdb.connect(str(cat), read_only=True)
    try:
        return con.execute(q).fetchall()
    finally:
        con.close()


def seed_texts() -> set[str]:
    return {sip.prompt_item(json.loads(line)["instruction"]) for line in SEEDS.read_text().splitlines()}


def listed(prompt: str) -> list[str]:
    return re.findall(r"(?m)^\d+\. (.+)$", prompt)


def test_prompts_hold_8_items_with_at_most_2_machine_ones(tmp_path):
    with ScriptedOpenAI(FakeModel()) as s:
        api.build(recipe(tmp_path, s.url, "    target: 40\n    identify: false\n    instances: false"),
                  catalog=tmp_path / "c.duckdb")
        prompts = s.prompts("Come up with a series of tasks:")
    seeds = seed_texts()
    assert len(prompts) >= 10
    machine_counts = []
    for p in prompts:
        items = listed(p)
        assert len(items) == 8 and p.endswith("\n9.")
        machine_counts.append(sum(1 for x in items if x not in seeds))
    assert machine_counts[:5] == [0] * 5  # round 1: the machine pool is empty
    assert max(machine_counts) == 2 and all(c == 2 for c in machine_counts[5:])


def test_every_heuristic_and_rouge_reason_is_recorded_with_the_text(tmp_path):
    answer = (" Plan a picnic menu for six friends who do not eat meat\n"
              "10. Plan a picnic menu for six friends who do not eat meat.\n"   # same round, near-duplicate
              "11. Summarize it\n"                                             # 3 words
              "12. " + " ".join(["word"] * 151) + "\n"
              "13. Show a picture of a cat sitting on the mat\n"
              "14. Write a program that prints the first hundred primes\n"
              "15. - Name the largest ocean on the planet Earth\n"
              "10. Échangez deux mots dans cette phrase française\n"
              "11. Tell me a fun fact about octopuses and their hearts\n"
              "16. never seen: the server stops at item 16")
    with ScriptedOpenAI(FakeModel(overrides={"Come up with a series": answer})) as s:
        res = api.build(recipe(tmp_path, s.url, "    target: 1\n    prompts_per_round: 1\n"
                                                "    identify: false\n    instances: false"),
                        catalog=tmp_path / "c.duckdb")
    assert res.rows == {"out": 1}
    assert sql(tmp_path / "c.duckdb", "select instruction from out") == \
        [("Plan a picnic menu for six friends who do not eat meat",)]
    rej = dict(sql(tmp_path / "c.duckdb", "select reason, detail from rejections"))
    assert rej["rouge_l"].startswith("Plan a picnic menu for six friends who do not eat meat.\n-- nearest: Plan a")
    assert rej["too_short"] == "Summarize it"
    assert rej["too_long"].startswith("word word")
    assert rej["blacklist:picture"].startswith("Show a picture")
    assert rej["forbidden_prefix"].startswith("Write a program")
    assert rej["leading_punctuation"].startswith("- Name")
    assert rej["non_ascii_start"].startswith("Échangez")
    assert rej["over_target"].startswith("Tell me a fun fact")
    assert not any("never seen" in d for d in rej.values())
    score = sql(tmp_path / "c.duckdb", "select score from rejections where reason = 'rouge_l'")[0][0]
    assert score >= 0.7


def test_a_response_cut_by_length_is_dropped_whole(tmp_path):
    cut = (" Invent a board game for two players and describe its rules\n10. Plan a garden party", "length")
    with ScriptedOpenAI(FakeModel(overrides={"Come up with a series": cut})) as s:
        res = api.build(recipe(tmp_path, s.url, "    target: 5\n    max_rounds: 2\n    prompts_per_round: 2\n"
                                                "    identify: false\n    instances: false"),
                        catalog=tmp_path / "c.duckdb")
    assert res.rows == {"out": 0}
    rows = sql(tmp_path / "c.duckdb", "select reason, detail from rejections")
    assert len(rows) == 4 and {r for r, _ in rows} == {"truncated"}
    assert rows[0][1].startswith(" Invent a board game")


def test_max_rounds_is_not_a_failure_and_is_reported(tmp_path):
    lines: list[str] = []
    with ScriptedOpenAI(FakeModel(items=1)) as s:
        res = api.build(recipe(tmp_path, s.url, "    target: 1000\n    max_rounds: 2\n    prompts_per_round: 2\n"
                                                "    identify: false\n    instances: false"),
                        catalog=tmp_path / "c.duckdb", log=lines.append)
        calls = len(s.bodies)
    assert res.status == "ok" and calls == 4 and 0 < res.rows["out"] <= 4
    assert any("stopped at max_rounds=2" in ln for ln in lines)


def test_chat_style_sends_the_list_as_a_user_message(tmp_path):
    with ScriptedOpenAI(FakeModel()) as s:
        res = api.build(recipe(tmp_path, s.url, "    style: chat\n    target: 8\n    identify: false\n"
                                                "    instances: false"), catalog=tmp_path / "c.duckdb")
        chats = [b for b in s.bodies if "messages" in b]
    assert res.rows == {"out": 8} and len(chats) == len(s.bodies) >= 2
    msg = chats[0]["messages"][-1]
    assert msg["role"] == "user" and "Start at number 9" in msg["content"] and len(listed(msg["content"])) == 8
    assert chats[0]["temperature"] == 0.7 and chats[0]["top_p"] == 0.5
    assert chats[0]["presence_penalty"] == 2.0 and chats[0]["frequency_penalty"] == 0.0
    kept = [r[0] for r in sql(tmp_path / "c.duckdb", "select instruction from out")]
    assert all(not re.match(r"\d", k) for k in kept)  # the chat answer's "9. " numbering is gone


def test_a_chat_answers_preamble_is_not_kept_as_a_task(tmp_path):
    # Instruct models often open with a sentence of their own before the numbered lines the prompt asks for.
    answer = ("I'm here to help with any task you have and I can assist with these:\n"
              "9. Invent a board game for two players and describe its rules\n10. Plan a garden party for ten guests")
    with ScriptedOpenAI(FakeModel(overrides={"Here is a numbered list": answer})) as s:
        res = api.build(recipe(tmp_path, s.url, "    style: chat\n    target: 5\n    max_rounds: 1\n"
                                                "    prompts_per_round: 1\n    identify: false\n    instances: false"),
                        catalog=tmp_path / "c.duckdb")
    assert res.rows == {"out": 2}
    kept = {r[0] for r in sql(tmp_path / "c.duckdb", "select instruction from out")}
    assert kept == {"Invent a board game for two players and describe its rules", "Plan a garden party for ten guests"}
    assert sql(tmp_path / "c.duckdb", "select reason, detail from rejections") == [("preamble", answer.split("\n")[0])]


def test_a_chat_preamble_cut_off_before_its_list_is_not_kept_as_a_task(tmp_path):
    # The bootstrap requests stop at a blank line, so "Sure! ...:\n\n9. ..." comes back as the preamble alone.
    answer = "Sure! Here are some more tasks for you:\n\n9. Invent a board game for two players"
    with ScriptedOpenAI(FakeModel(overrides={"Here is a numbered list": answer})) as s:
        res = api.build(recipe(tmp_path, s.url, "    style: chat\n    target: 5\n    max_rounds: 1\n"
                                                "    prompts_per_round: 1\n    identify: false\n    instances: false"),
                        catalog=tmp_path / "c.duckdb")
    assert res.rows == {"out": 0}
    assert sql(tmp_path / "c.duckdb", "select reason, detail from rejections") == [
        ("preamble", "Sure! Here are some more tasks for you:")]


@pytest.mark.parametrize("answer, dropped", [
    # a chat reply, not a list: it was kept as a new task
    ("I'm ready to help. What's the task you'd like me to assist with?",
     [("unnumbered", "I'm ready to help. What's the task you'd like me to assist with?")]),
    # a list begun again at 1 answers the listed tasks: both lines were kept as tasks
    ("1. Yes, the sentence is grammatically correct.\n2. No, it's not.",
     [("renumbered", "1. Yes, the sentence is grammatically correct."), ("renumbered", "2. No, it's not.")]),
])
def test_a_chat_answer_that_does_not_continue_the_list_adds_no_task(tmp_path, answer, dropped):
    with ScriptedOpenAI(FakeModel(overrides={"Here is a numbered list": answer})) as s:
        res = api.build(recipe(tmp_path, s.url, "    style: chat\n    target: 5\n    max_rounds: 1\n"
                                                "    prompts_per_round: 1\n    identify: false\n    instances: false"),
                        catalog=tmp_path / "c.duckdb")
    assert res.rows == {"out": 0}
    assert sql(tmp_path / "c.duckdb", "select reason, detail from rejections order by detail") == dropped


def test_the_chat_list_parse_keeps_only_lines_numbered_from_where_the_list_goes_on():
    from dataforge.steps.generate.self_instruct_parse import split_chat_list

    assert split_chat_list("9. Plan a party\n10. Name a river", 9) == (["Plan a party", "Name a river"], [])
    assert split_chat_list("Sure:\n9. Plan a party\n3. Solve it\n 11 . Name a river", 9) == (
        ["Plan a party", "Name a river"], [("preamble", "Sure:"), ("renumbered", "3. Solve it")])
    assert split_chat_list("Here are more:", 9) == ([], [("preamble", "Here are more:")])
    assert split_chat_list("", 9) == ([""], [])  # an empty answer: `filter.heuristics` says `empty`
    assert split_chat_list("9. \n10. Go", 9) == (["", "Go"], [])


def test_a_candidate_near_one_beyond_the_target_is_over_target_not_its_near_duplicate(tmp_path):
    answer = (" Invent a board game for two players and describe its rules\n10. Plan a garden party for ten guests "
              "in June\n11. Plan a garden party for ten guests in July")
    with ScriptedOpenAI(FakeModel(overrides={"Come up with a series": answer})) as s:
        res = api.build(recipe(tmp_path, s.url, "    target: 1\n    prompts_per_round: 1\n    identify: false\n"
                                                "    instances: false"), catalog=tmp_path / "c.duckdb")
    assert res.rows == {"out": 1}
    # the June task was never kept, so the July one is not a "near-duplicate" of it
    assert sql(tmp_path / "c.duckdb", "select reason, detail from rejections order by detail") == [
        ("over_target", "Plan a garden party for ten guests in July"),
        ("over_target", "Plan a garden party for ten guests in June")]


def test_completion_requests_carry_the_reference_settings(tmp_path):
    with ScriptedOpenAI(FakeModel()) as s:
        api.build(recipe(tmp_path, s.url, "    target: 4"), catalog=tmp_path / "c.duckdb")
        bodies = s.bodies
    boot = next(b for b in bodies if b["prompt"].startswith("Come up with a series"))
    assert (boot["temperature"], boot["top_p"], boot["max_tokens"], boot["presence_penalty"],
            boot["frequency_penalty"]) == (0.7, 0.5, 1024, 2.0, 0.0)
    assert boot["stop"] == ["\n\n", "\n16", "16.", "16 ."]
    ident = next(b for b in bodies if b["prompt"].endswith("Is it classification?"))
    assert (ident["temperature"], ident["max_tokens"], ident["stop"]) == (0.0, 3, ["\n", "Task"])
    inst = [b for b in bodies if b["prompt"].startswith(("Come up with examples", "Given a classification"))]
    assert inst and all(b["presence_penalty"] == 1.5 and b["temperature"] == 0.0 for b in inst)
    assert {b["max_tokens"] for b in inst} <= {300, 350}
    assert all(b["stop"] == ["Example 6", "Task:"] for b in inst)


def test_identification_and_instances_make_one_row_per_instance_with_lineage(tmp_path):
    with ScriptedOpenAI(FakeModel()) as s:
        res = api.build(recipe(tmp_path, s.url, "    target: 10"), catalog=tmp_path / "c.duckdb")
        prompts = s.prompts()
    cat = tmp_path / "c.duckdb"
    rows = sql(cat, "select instruction, is_classification, input, output, task_id, most_similar, "
                    "avg_similarity_score, source from out")
    assert len({r[4] for r in rows}) == 10 and res.rows["out"] == len(rows)
    clf = [r for r in rows if r[1]]
    gen = [r for r in rows if not r[1]]
    assert clf and gen
    assert {r[3] for r in clf} == {"Positive", "Negative"}              # output-first: the label is the output
    assert {r[2] for r in gen} == {"Topic: rain", "Topic: snow"}          # input-first: fields before "Output:"
    for r in clf:
        assert any(p.startswith("Given a classification") and p.endswith(r[0] + "\n") for p in prompts)
    sims = json.loads(rows[0][5])
    assert 0 < len(sims) <= 10 and list(sims.values()) == sorted(sims.values(), reverse=True)
    assert 0 <= rows[0][6] <= max(sims.values())
    # lineage: every row -> its task id -> the seed rows listed in the prompt that produced it
    lin = sql(cat, "select l.parent_id from lineage l join out o on l.row_id = o.id")
    assert {p for (p,) in lin} == {r[4] for r in rows}
    (table,) = sql(cat, "select table_name from step_outputs where step_id = 'seeds'")[0]
    seed_ids = {i for (i,) in sql(cat, f'select id from "{table}"')}
    task_parents = {p for (p,) in sql(cat, f"select parent_id from lineage where row_id = '{rows[0][4]}'")}
    assert 6 <= len(task_parents) <= 8 and task_parents & seed_ids


def test_avg_and_most_similar_match_rouge_score(tmp_path):
    from rouge_score import rouge_scorer

    with ScriptedOpenAI(FakeModel()) as s:
        api.build(recipe(tmp_path, s.url, "    target: 6\n    identify: false\n    instances: false"),
                  catalog=tmp_path / "c.duckdb")
    rows = sql(tmp_path / "c.duckdb", "select instruction, most_similar, avg_similarity_score from out")
    seeds = [sip.prompt_item(json.loads(line)["instruction"]) for line in SEEDS.read_text().splitlines()]
    pool = seeds + [r[0] for r in rows]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for k, (text, most, avg) in enumerate(rows):
        scores = [scorer.score(text, p)["rougeL"].fmeasure for p in pool[: len(seeds) + k]]
        assert avg == pytest.approx(sum(scores) / len(scores), abs=1e-12)
        assert max(json.loads(most).values()) == pytest.approx(max(scores), abs=1e-12)


def test_same_seed_and_answers_give_the_same_rows(tmp_path):
    outs = []
    with ScriptedOpenAI(FakeModel()) as s:
        for i in range(2):
            d = tmp_path / str(i)
            d.mkdir()
            api.build(recipe(d, s.url, "    target: 12"), catalog=d / "c.duckdb")
            outs.append(sql(d / "c.duckdb", "select * from out"))
    assert outs[0] == outs[1] and outs[0]


def test_resume_after_a_killed_build_repays_no_call(tmp_path):
    import threading

    gate = threading.Event()
    seen: list[str] = []
    fake = FakeModel()

    def answer(prompt, body):
        seen.append(prompt)
        if len(seen) > 7:
            gate.wait(60)  # hang in round 2 until the build is killed
        return fake(prompt, body)

    with ScriptedOpenAI(answer) as s:
        r = recipe(tmp_path, s.url, "    target: 60\n    identify: false\n    instances: false",
                   concurrency=1)
        cat = tmp_path / "c.duckdb"
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.Popen([sys.executable, "-m", "dataforge.cli", "build", str(r), "--catalog", str(cat)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(seen) <= 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the call log commits within its 0.5 s interval
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        gate.set()
        first_run = list(seen)
        res = api.build(r, catalog=cat)
    assert res.status == "ok" and res.rows == {"out": 60}
    assert len(first_run) >= 8
    again = seen[len(first_run):]
    assert not set(again) & set(first_run[:7])  # answered before the kill: read back, never sent again
    paid = sql(cat, "select count(*), count(distinct request_hash) from llm_calls where status = 'ok'")[0]
    assert paid[0] == paid[1]  # no request answered (paid) twice


def test_parse_helpers():
    assert sip.prompt_item("  Sort   the list:\n") == "Sort the list"
    assert sip.split_list(" first task here\n10. second one\n11 . third\n") == \
        ["first task here", "second one", "third"]
    assert sip.split_list("9. chat item\n10. next") == ["", "chat item", "next"]
    assert [sip.parse_yes_no(x) for x in (" Yes", "yes.", "NO", " no,", "maybe", "")] == \
        [True, True, False, False, None, None]


def test_input_first_and_output_first_parsing():
    gen = sip.parse_input_first("Example 1\nList: 3, 1\nOutput: 1, 3\nExample 2\nInput: 9, 2\nOutput: 2, 9")
    assert [(i.input, i.output) for i in gen] == [("List: 3, 1", "1, 3"), ("9, 2", "2, 9")]
    assert [(i.input, i.output) for i in sip.parse_input_first("Output: 42")] == [("", "42")]
    assert sip.parse_input_first("just prose") == []
    run_on = sip.parse_input_first("Output: yes\nInput 2: more")
    assert run_on[0].output == "yes"
    clf = sip.parse_output_first("Class label: Spam\nText: win a prize\nClass label: Ham\nText: lunch?\n"
                                 "Class label: Unsure")
    assert [(i.input, i.output) for i in clf] == [("Text: win a prize", "Spam"), ("Text: lunch?", "Ham"),
                                                   ("", "Unsure")]
    assert sip.parse_output_first("no labels here") == []


def test_every_instance_filter():
    import random

    I = sip.Instance
    kept, dropped = sip.filter_instances(
        [I("a", "b"), I("same", "same"), I("x", ""), I("ends:", "y"), I("p", "q:"), I("a", "b"), I("c", "d")],
        truncated=True, max_instances=5, rng=random.Random(0))
    assert [(d.instance.input, d.reason) for d in dropped] == [
        ("c", "instance_truncated"), ("same", "same_input_output"), ("x", "empty_output"),
        ("ends:", "ends_with_colon"), ("p", "ends_with_colon"), ("a", "duplicate_instance")]
    assert [(k.input, k.output) for k in kept] == [("a", "b")]
    kept, dropped = sip.filter_instances([I("a", "1"), I("b", "2"), I("a", "3")], truncated=False,
                                         max_instances=5, rng=random.Random(0))
    assert kept == [] and {d.reason for d in dropped} == {"conflicting_outputs"} and len(dropped) == 3
    kept, dropped = sip.filter_instances([I("", "1"), I("", "2")], truncated=False, max_instances=5,
                                         rng=random.Random(0))
    assert len(kept) == 2  # empty inputs never conflict
    many = [I(str(i), f"o{i}") for i in range(9)]
    k1, d1 = sip.filter_instances(many, truncated=False, max_instances=5, rng=random.Random(3))
    k2, _ = sip.filter_instances(many, truncated=False, max_instances=5, rng=random.Random(3))
    assert len(k1) == 5 and k1 == k2 and [d.reason for d in d1] == ["over_max_instances"] * 4
    assert [int(k.input) for k in k1] == sorted(int(k.input) for k in k1)
