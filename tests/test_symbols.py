"""transform.symbols: symbol-tuning prompts (properties with hypothesis, recipe end to end)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import shared_data

from dataforge import api
from dataforge.errors import UserError
from dataforge.rows import content_ids
from dataforge.textutil.fewshot import PromptOptions, class_prompts
from dataforge.textutil.symbols import letter_string, symbol_pool

REPO = Path(__file__).resolve().parents[1]
# Labels that also occur in the symbol pools, so the ban on natural labels is really exercised.
LABEL_WORDS = ["positive", "negative", "the", "of", "a", "b", "1", "0", "2", "ab", "time", "good", "z"]
FORMATS = ["{input} => {label}", "[{input}] {label}", "{input}\n: {label}"]


def frame(sizes: list[int], labels: list[str]) -> pl.DataFrame:
    """Rows with texts made of symbols only (no letters or digits), so a label can only come from a slot."""
    texts, labs = [], []
    for label, n in zip(labels, sizes):
        for _ in range(n):
            texts.append("~" * (len(texts) + 1))
            labs.append(label)
    df = pl.DataFrame({"text": texts, "label": labs})
    return df.with_columns(content_ids(df).alias("id"))


@st.composite
def tasks(draw):
    n_cls = draw(st.integers(2, 5))
    labels = draw(st.lists(st.sampled_from(LABEL_WORDS), min_size=n_cls, max_size=n_cls, unique=True))
    kmin = draw(st.integers(1, 3))
    kmax = draw(st.integers(kmin, 4))
    sizes = draw(st.lists(st.integers(kmax + 1, kmax + 4), min_size=n_cls, max_size=n_cls))
    return frame(sizes, labels), (kmin, kmax)


def build(df, k, seed=0, pool="train", **kw):
    opts = PromptOptions(k=k, formats=FORMATS, separators=["\n\n", "\n--\n"],
                         pool=None if pool is None else symbol_pool(pool), **kw)
    return class_prompts(df, task="t", label_names={}, opts=opts, seed=seed)


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(tasks(), st.integers(0, 2**32), st.sampled_from(["train", "heldout"]))
def test_no_natural_label_in_prompts_and_symbols_distinct(task, seed, pool):
    df, k = task
    out = build(df, k, seed, pool)
    natural = {s.lower() for s in df["label"].unique()}
    for prompt, sm in zip(out["prompt"], out["symbol_map"]):
        words = {w.lower() for w in re.findall(r"[A-Za-z0-9]+", prompt)}
        assert not words & natural, prompt
        symbols = [s.lower() for s in json.loads(sm).values()]
        assert len(set(symbols)) == len(symbols) == len(natural)
        assert not set(symbols) & natural


@FAST
@given(tasks(), st.integers(0, 2**32))
def test_exemplars_per_class_and_query_excluded(task, seed):
    df, (kmin, kmax) = task
    out = build(df, (kmin, kmax), seed)
    label_of = dict(zip(df["id"], df["label"]))
    n_cls = df["label"].n_unique()
    assert out.height == df.height
    for q, ex in zip(out["_parent_id"], out["exemplar_ids"]):
        assert q not in ex
        assert len(set(ex)) == len(ex)
        per_class = pl.Series([label_of[e] for e in ex]).value_counts()
        assert per_class.height == n_cls
        counts = set(per_class["count"].to_list())
        assert len(counts) == 1 and kmin <= counts.pop() <= kmax


@FAST
@given(tasks(), st.integers(0, 2**31))
def test_same_seed_same_bytes_other_seed_differs(task, seed):
    df, k = task
    a, b = build(df, k, seed), build(df, k, seed)
    assert a.write_ndjson() == b.write_ndjson()
    assert build(df, k, seed + 1).write_ndjson() != a.write_ndjson()


@settings(max_examples=15, deadline=None)
@given(tasks(), st.randoms(use_true_random=False))
def test_prompt_of_a_row_does_not_depend_on_row_order(task, rnd):
    df, k = task
    order = list(range(df.height))
    rnd.shuffle(order)
    a = build(df, k, 3)
    b = build(df[order], k, 3)
    assert dict(zip(a["_parent_id"], a["prompt"])) == dict(zip(b["_parent_id"], b["prompt"]))


def test_target_is_the_symbol_of_the_query_label():
    df = frame([5, 5, 5], ["x", "y", "z"])
    out = build(df, (2, 2), 1)
    label_of = dict(zip(df["id"], df["label"]))
    for q, target, sm in zip(out["_parent_id"], out["target"], out["symbol_map"]):
        assert json.loads(sm)[label_of[q]] == target


def test_relevant_labels_keep_natural_names_and_instruction_is_optional():
    df = frame([4, 4], ["good", "bad"])
    out = build(df, (2, 2), 1, pool=None, instruction="Is it good or bad?")
    assert all(p.startswith("Is it good or bad?") for p in out["prompt"])
    assert set(out["target"]) == {"good", "bad"}
    assert out["target"].to_list() == out["label"].to_list()
    assert not any("Is it" in p for p in build(df, (2, 2), 1)["prompt"])


def test_pools_are_disjoint_and_follow_the_paper():
    train, held = symbol_pool("train"), symbol_pool("heldout")
    assert not set(train.symbols) & set(held.symbols)
    assert len(train) == 30_000
    assert [letter_string(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]
    assert {"0", "9999", "A", "the"} <= set(train.symbols)
    assert {"10000", "99999"} <= set(held.symbols) and "9999" not in set(held.symbols)


def test_class_too_small_for_k_is_a_user_error(write, catalog):
    recipe = write("r.yaml", """
        name: small
        steps:
          - id: rows
            type: source.inline
            rows: [{text: a, label: x}, {text: b, label: x}, {text: c, label: y}, {text: d, label: y}]
          - id: prompts
            type: transform.symbols
            k: 2
        outputs: {p: prompts}
    """)
    with pytest.raises(Exception) as e:
        api.build(recipe, catalog=catalog)
    assert "r.yaml" in str(e.value) and "k=2" in str(e.value)


@pytest.mark.parametrize("step", [
    "{id: prompts, type: transform.symbols, from: flipped, k: 1, relevant_labels: true, label_names: %s}",
    "{id: prompts, type: transform.symbols, k: 1, relevant_labels: true, label_names: %s}",
    "{id: prompts, type: transform.template, label_names: %s, templates: {'*': [{id: t, prompt: '{{ text }}'}]}}",
])
def test_label_names_for_a_task_that_is_not_an_input_is_a_located_error(write, catalog, step):
    # The task of a row after transform.flip is the flip step's id, not its source's: `rows` names no task.
    recipe = write("r.yaml", """
        name: small
        steps:
          - id: rows
            type: source.inline
            rows: [{text: a, label: 0}, {text: b, label: 0}, {text: c, label: 1}, {text: d, label: 1}]
          - {id: flipped, type: transform.flip}
          - %s
        outputs: {p: prompts}
    """ % (step % "{rows: {0: negative, 1: positive}}"))
    with pytest.raises(UserError, match=r"r\.yaml:7:\d+: steps\[2\]\.label_names: names no task of this step: "
                                        r"'rows'; its tasks \(input step ids\) are 'flipped'"):
        api.build(recipe, catalog=catalog)
    assert not catalog.exists() or api.sql("select count(*) as n from datasets", catalog=catalog)["n"][0] == 0


def test_symbol_tuning_recipe_builds_on_our_data(catalog):
    res = api.build(REPO / "recipes" / "symbol_tuning.yaml", catalog=catalog)
    assert res.status == "ok"
    train = api.read("symbol_tuning_train", catalog=catalog)
    assert set(train["task"]) == {"sst2", "trec", "subj"}
    assert train.height == 24 + 36 + 20
    assert {"prompt", "target", "symbol_map", "exemplar_ids"} <= set(train.columns)
    trec = train.filter(pl.col("task") == "trec")
    assert all(len(json.loads(m)) == 6 for m in trec["symbol_map"])
    with_instr = api.read("symbol_eval_symbols_instruction", catalog=catalog)
    assert all(p.startswith("Classify the sentiment") for p in with_instr["prompt"])
    labels = api.read("symbol_eval_labels", catalog=catalog)
    assert set(labels["target"]) == {"positive", "negative"}
    flipped = api.read("symbol_eval_flipped", catalog=catalog)
    names = {"0": "negative", "1": "positive"}
    assert all(t != names[o] for t, o in zip(flipped["target"], flipped["original_label"]))


@pytest.mark.slow
def test_symbol_tuning_recipe_on_public_data(catalog):
    c = "classification"
    paths = {"sst2": shared_data(c, "sst2", "stsa.binary.train"), "trec": shared_data(c, "trec", "train.txt"),
             "subj": shared_data(c, "subj", "subj.all"), "mr": shared_data(c, "mr", "rt-polarity.all")}
    res = api.build(REPO / "recipes" / "symbol_tuning.yaml", catalog=catalog,
                    vars={**{k: str(v) for k, v in paths.items()}, "subj_encoding": "latin-1", "mr_encoding": "latin-1", "train_k": "2-10", "prompts_per_task": "300"})
    assert res.status == "ok"
    train = api.read("symbol_tuning_train", catalog=catalog)
    assert train.group_by("task").len().sort("task")["len"].to_list() == [300, 300, 300]
    assert api.read("symbol_eval_flipped", catalog=catalog).height == 300


def test_tasks_from_a_column_keep_exemplars_within_their_task():
    from dataforge.textutil.fewshot import symbol_tuning_prompts

    a, b = frame([4, 4], ["x", "y"]), frame([5, 5, 5], ["x", "y", "z"])
    df = pl.concat([a.with_columns(pl.lit("A").alias("t"), pl.lit(1).alias("keep")),
                    b.with_columns(pl.concat_str([pl.lit("_"), pl.col("text")]).alias("text"))
                    .pipe(lambda d: d.with_columns(content_ids(d.drop("id")).alias("id")))
                    .with_columns(pl.lit("B").alias("t"), pl.lit(2).alias("keep"))])
    out = symbol_tuning_prompts(df, 0, task_column="t", k=(2, 3), pool=symbol_pool("train"), passthrough=["keep"],
                                max_prompts_per_task=6)
    task_of = dict(zip(df["id"], df["t"]))
    assert out.group_by("task").len().sort("task")["len"].to_list() == [6, 6]
    for task, ex, q, keep in zip(out["task"], out["exemplar_ids"], out["_parent_id"], out["keep"]):
        assert task_of[q] == task and {task_of[e] for e in ex} == {task}
        assert keep == (1 if task == "A" else 2)


def test_several_prompts_per_query_differ_and_keep_the_rules():
    df = frame([6, 6], ["x", "y"])
    one = build(df, (2, 4), 9)
    three = build(df, (2, 4), 9, prompts_per_query=3)
    assert three.height == 3 * df.height
    assert three["_parent_id"].to_list() == [q for q in one["_parent_id"] for _ in range(3)]
    assert three["prompt"].gather(list(range(0, three.height, 3))).to_list() == one["prompt"].to_list()
    for q in df["id"]:
        copies = three.filter(pl.col("_parent_id") == q)
        assert copies["prompt"].n_unique() == 3
        assert all(q not in ex for ex in copies["exemplar_ids"])
