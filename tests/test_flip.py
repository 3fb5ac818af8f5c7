"""transform.flip: swaps on binary tasks, derangements on multi-class tasks, recorded maps."""

from __future__ import annotations

import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge import api
from dataforge.textutil.labels import flip_labels, flip_map

labels_st = st.lists(st.text(min_size=1, max_size=6), min_size=2, max_size=8, unique=True)


@settings(max_examples=60, deadline=None)
@given(labels_st, st.integers(0, 2**32), st.data())
def test_flip_is_a_derangement_and_an_involution_on_binary_tasks(labels, seed, data):
    rows = data.draw(st.lists(st.sampled_from(labels), min_size=len(labels), max_size=30))
    rows = labels + rows  # every label occurs
    df = pl.DataFrame({"label": rows})
    once = flip_labels(df, "label", seed)
    assert all(a != b for a, b in zip(once["label"], rows))
    assert sorted(once["label"]) == sorted(pl.Series(rows).replace_strict(json.loads(once["flip_map"][0])))
    assert once["original_label"].to_list() == rows
    assert set(json.loads(once["flip_map"][0]).values()) == set(labels)
    if len(labels) == 2:
        twice = flip_labels(once.drop("original_label", "flip_map"), "label", seed)
        assert twice["label"].to_list() == rows


@settings(max_examples=30, deadline=None)
@given(labels_st, st.integers(0, 2**31))
def test_map_depends_only_on_seed_and_task(labels, seed):
    assert flip_map(labels, seed, "t") == flip_map(list(reversed(labels)), seed, "t")


def test_each_task_gets_its_own_map_and_rows_keep_their_order():
    df = pl.DataFrame({"task": ["a", "b", "a", "b", "a", "b"], "label": ["x", "p", "y", "q", "z", "r"]})
    out = flip_labels(df, "label", 5, task_column="task")
    assert out["task"].to_list() == df["task"].to_list()
    assert out["original_label"].to_list() == df["label"].to_list()
    for task, m in zip(out["task"], out["flip_map"]):
        assert set(json.loads(m)) == ({"x", "y", "z"} if task == "a" else {"p", "q", "r"})


def test_flip_step_records_lineage_to_the_unflipped_row(write, catalog):
    recipe = write("r.yaml", """
        name: flip
        steps:
          - id: rows
            type: source.inline
            rows: [{text: a, label: pos}, {text: b, label: neg}]
          - id: flipped
            type: transform.flip
        outputs: {flipped: flipped, rows: rows}
    """)
    api.build(recipe, catalog=catalog)
    out = api.read("flipped", catalog=catalog).sort("text")
    assert out["label"].to_list() == ["neg", "pos"]
    assert json.loads(out["flip_map"][0]) == {"neg": "pos", "pos": "neg"}
    src = api.read("rows", catalog=catalog)
    lineage = api.sql("select row_id, parent_id from lineage", catalog=catalog)
    assert set(lineage.filter(pl.col("row_id").is_in(out["id"].to_list()))["parent_id"]) == set(src["id"])
