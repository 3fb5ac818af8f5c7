"""The pruned ROUGE-L filter (score_floor > 0) makes exactly the brute-force filter's decisions.

Brute force is the plain rouge_score Self-Instruct loop of test_rouge.py. The pruned filter must
keep the same rows, and record the same best score and nearest row wherever that score reaches
the floor (always for a dropped row); below the floor it records NaN and -1.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import dataforge.api as api
import dataforge.textsim.pool as pool_module
import dataforge.textsim.prefix as prefix_module
from dataforge.textsim import RougePool, greedy_filter, reference_filter
from dataforge.textsim.prefix import min_lcs, min_overlap
from conftest import shared_data
from test_rouge import ref_f, self_instruct_reference


def assert_floored(result, expected, floor: float) -> None:
    """`result` equals the brute-force `expected` where its best F reaches `floor`, NaN/-1 below."""
    keep, best, nearest = expected
    assert result.keep.tolist() == keep.tolist()
    exact = best >= floor if floor > 0 else np.ones(len(best), dtype=bool)
    assert result.max_score[exact].tolist() == best[exact].tolist()
    assert result.nearest[exact].tolist() == nearest[exact].tolist()
    assert np.isnan(result.max_score[~exact]).all() and (result.nearest[~exact] == -1).all()


@contextlib.contextmanager
def small_blocks(block: int, prune_from: float = 0.05, hits: int | None = None):
    """Tiny greedy blocks and join pieces (many block boundaries), pruning from a low floor."""
    saved = pool_module._PRUNED_BLOCK, pool_module._PRUNE_FROM, prefix_module._HITS
    pool_module._PRUNED_BLOCK, pool_module._PRUNE_FROM = block, prune_from
    prefix_module._HITS = hits or prefix_module._HITS
    try:
        yield
    finally:
        pool_module._PRUNED_BLOCK, pool_module._PRUNE_FROM, prefix_module._HITS = saved


def test_bounds_never_exceed_what_a_reaching_pair_has():
    # Every (m, n, lcs) whose rouge_score F reaches f has lcs >= min_lcs and lcs >= min_overlap.
    for f in (0.05, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0):
        for m in range(1, 40):
            for n in range(1, 40):
                for lcs in range(1, min(m, n) + 1):
                    score = 2 * (lcs / n) * (lcs / m) / ((lcs / n) + (lcs / m))
                    if score >= f:
                        assert lcs >= min_lcs(f, m, n) and lcs >= min_overlap(f, m) and lcs >= min_overlap(f, n)


WORDS = ["a", "the", "write", "poem", "list", "cats", "x", "y", "z", "of", "sea", "running", "!", "é"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(WORDS), max_size=12), min_size=1, max_size=40),
       st.lists(st.lists(st.sampled_from(WORDS), max_size=12), max_size=5),
       st.sampled_from([0.3, 0.5, 0.7, 0.9, 1.0]), st.sampled_from([0.1, 0.5, 1.0]),
       st.sampled_from([1, 3, 64]))
def test_property_pruned_equals_brute_force(rows, refs, threshold, floor_share, block):
    texts, seeds = [" ".join(r) for r in rows], [" ".join(r) for r in refs]
    floor = threshold * floor_share
    expected = self_instruct_reference(texts, seeds, threshold)
    with small_blocks(block, hits=7):
        assert_floored(greedy_filter(texts, threshold, seeds, score_floor=floor), expected, floor)


def _adversarial() -> list[str]:
    long_a = " ".join(["alpha", "beta", "gamma"] * 120)  # 360 tokens, repeats
    long_b = " ".join(["alpha", "beta", "gamma"] * 119 + ["delta"])
    return [
        "", "", "...", "a", "a", "b", "the the the the the", "the the the the", "the the", "the",
        "Write a poem", "write a poem", "Write a poem!", "poem a write", "a a a a poem", "Write",
        long_a, long_b, long_a, " ".join(["x"] * 70 + ["y"] * 10), " ".join(["y"] * 10 + ["x"] * 70),
        " ".join(str(i) for i in range(200)), " ".join(str(i) for i in range(1, 201)),
        " ".join(str(i) for i in range(0, 200, 2)), "x " * 65 + "z", "x", "z",
        "List three facts about cats.", "List three facts about cats and dogs.", "facts",
    ]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.9, 1.0])
def test_adversarial_texts_match_brute_force(threshold):
    texts = _adversarial()
    texts = texts + texts[::-1]  # every text again, in the other order: identical texts everywhere
    seeds = ["the", "Write a poem", ""]
    expected = self_instruct_reference(texts, seeds, threshold)
    for floor in (threshold, threshold / 2):
        with small_blocks(5):
            assert_floored(greedy_filter(texts, threshold, seeds, score_floor=floor), expected, floor)
        assert_floored(greedy_filter(texts, threshold, seeds, score_floor=floor), expected, floor)


def _real_texts() -> tuple[list[str], list[str]]:
    seeds = [json.loads(ln)["instruction"] for ln in
             shared_data("self_instruct", "seed_tasks.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
    alpaca = [r["instruction"] for r in json.loads(shared_data("alpaca", "alpaca_first2000.json").read_text("utf-8"))]
    trec = [ln.split(" ", 1)[1] for ln in
            shared_data("classification", "trec", "train.txt").read_text("utf-8", "replace").splitlines() if " " in ln]
    sst2 = [ln.split(" ", 1)[1] for ln in
            shared_data("classification", "sst2", "stsa.binary.dev").read_text("utf-8").splitlines() if " " in ln]
    return seeds, alpaca + trec[:3000] + sst2


@pytest.mark.parametrize("threshold", [0.4, 0.5, 0.7, 0.9])
def test_real_data_same_decisions_as_brute_force(threshold):
    seeds, texts = _real_texts()
    brute = greedy_filter(texts, threshold, seeds)  # floor 0: every pair scored (checked against rouge_score in test_rouge)
    assert 0 < (~brute.keep).sum() and brute.keep.sum() > 1000
    pruned = greedy_filter(texts, threshold, seeds, score_floor=threshold)
    assert_floored(pruned, (brute.keep, brute.max_score, brute.nearest), threshold)
    half = greedy_filter(texts, threshold, seeds, score_floor=threshold / 2)
    assert_floored(half, (brute.keep, brute.max_score, brute.nearest), threshold / 2)


def test_real_data_with_stemming():
    seeds, texts = _real_texts()
    texts = texts[:2500]
    brute = greedy_filter(texts, 0.6, seeds, use_stemmer=True)
    pruned = greedy_filter(texts, 0.6, seeds, use_stemmer=True, score_floor=0.6)
    assert_floored(pruned, (brute.keep, brute.max_score, brute.nearest), 0.6)


def test_pool_batches_with_a_floor_equal_one_pass_and_the_reference_filter():
    seeds, texts = _real_texts()
    texts = texts[:3000]
    whole = greedy_filter(texts, 0.7, seeds)
    pool = RougePool(seeds[:100])
    pool.add(seeds[100:])  # added after construction, before the index exists
    parts = [pool.filter_greedy(texts[:500], 0.7, score_floor=0.7),
             pool.filter_greedy(texts[500:1200], 0.7),  # brute-force batch in between: kept rows still indexed
             pool.filter_greedy(texts[1200:], 0.7, score_floor=0.35)]  # lower floor: index rebuilt
    keep = np.concatenate([p.keep for p in parts])
    assert keep.tolist() == whole.keep.tolist()
    drop = ~keep
    assert np.concatenate([p.max_score for p in parts])[drop].tolist() == whole.max_score[drop].tolist()
    assert np.concatenate([p.nearest for p in parts])[drop].tolist() == whole.nearest[drop].tolist()
    probe = texts[:400]
    exact, exact_near = RougePool(seeds).best(probe)
    best, near = RougePool(seeds).best(probe, score_floor=0.5)
    hi = exact >= 0.5
    assert best[hi].tolist() == exact[hi].tolist() and near[hi].tolist() == exact_near[hi].tolist()
    assert np.isnan(best[~hi]).all()
    ref = reference_filter(probe, seeds, 0.5, score_floor=0.5)
    assert ref.keep.tolist() == (exact < 0.5).tolist()


def test_floor_above_threshold_is_refused():
    with pytest.raises(ValueError, match="score_floor"):
        greedy_filter(["a b"], 0.5, score_floor=0.6)


# -- the step --------------------------------------------------------------------------------------
RECIPE = """
name: rouge-floor
steps:
  - id: new
    type: source.inline
    rows:
      - {instruction: "Write a short poem about the sea."}
      - {instruction: "Write a poem about the sea."}
      - {instruction: "Write a long poem about a lake."}
      - {instruction: "Cook pasta with garlic."}
  - id: dedup
    type: filter.rouge_l
    from: new
    threshold: 0.7
    %s
outputs:
  kept: dedup
"""


def test_step_records_null_below_the_floor_and_exact_scores_above(write, catalog):
    api.build(write("a.yaml", RECIPE % ""), catalog=catalog)
    kept = api.read("kept", catalog=catalog)
    assert kept["instruction"].to_list() == ["Write a short poem about the sea.", "Write a long poem about a lake.",
                                             "Cook pasta with garlic."]
    assert kept["rouge_l_max"].to_list() == [None, None, None]  # default floor = threshold
    rej = api.sql("select score from rejections where step_id = 'dedup'", catalog=catalog)
    assert rej["score"].to_list() == [ref_f("Write a poem about the sea.", "Write a short poem about the sea.", False)]

    api.build(write("b.yaml", RECIPE % "score_floor: 0.3"), catalog=catalog)
    kept = api.read("kept", catalog=catalog)
    lake = ref_f("Write a long poem about a lake.", "Write a short poem about the sea.", False)
    assert 0.3 <= lake < 0.7
    assert kept["rouge_l_max"].to_list() == [None, lake, None]
    assert kept["rouge_l_nearest_id"][1] == kept["id"][0]

    api.build(write("c.yaml", RECIPE % "score_floor: 0"), catalog=catalog)
    assert api.read("kept", catalog=catalog)["rouge_l_max"].to_list() == [0.0, lake, 0.0]


def test_step_floor_above_threshold_is_a_located_error(write, catalog, cli):
    recipe = write("r.yaml", RECIPE % "score_floor: 0.9")
    res = cli("validate", recipe, "--catalog", catalog)
    assert res.exit_code == 2
    assert "r.yaml:" in res.output and "score_floor" in res.output and "must not exceed threshold" in res.output
    assert not catalog.exists()
