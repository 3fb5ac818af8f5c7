"""ROUGE-L (dataforge.textsim) equals rouge_score bit for bit; filter.rouge_l keeps what Self-Instruct keeps."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize as rouge_tokenize

import dataforge.api as api
import dataforge.textsim.pool as pool_module
from dataforge.errors import UserError
from dataforge.textsim import RougePool, RougeTokens, greedy_filter, reference_filter, rouge_l_f, rouge_l_matrix
from conftest import shared_data

SCORERS = {stem: rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem) for stem in (False, True)}


def ref_f(a: str, b: str, stem: bool) -> float:
    return SCORERS[stem].score(a, b)["rougeL"].fmeasure


def self_instruct_reference(texts: list[str], seeds: list[str], threshold: float, stem: bool = False):
    """The Self-Instruct loop written directly with rouge_score (Alpaca's variant: tokenize once)."""
    tokenize = SCORERS[stem]._tokenizer.tokenize
    pool = [tokenize(t) for t in seeds]
    serial = list(range(len(seeds)))
    keep, best, nearest = [], [], []
    for i, text in enumerate(texts):
        toks = tokenize(text)
        scores = [rouge_scorer._score_lcs(toks, old).fmeasure for old in pool]
        top = max(scores) if scores else 0.0
        best.append(top)
        nearest.append(serial[int(np.argmax(scores))] if top > 0 else -1)
        keep.append(top < threshold)
        if keep[-1]:
            pool.append(toks)
            serial.append(len(seeds) + i)
    return np.array(keep, dtype=bool), np.array(best), np.array(nearest)


def assert_same(result, expected) -> None:
    keep, best, nearest = expected
    assert result.keep.tolist() == keep.tolist()
    assert result.max_score.tolist() == best.tolist()  # exact float equality, not approx
    assert result.nearest.tolist() == nearest.tolist()


EDGE_PAIRS = [
    ("", ""), ("", "a"), ("a", ""), ("...", "!!!"), ("?!", "hello"), ("   ", "\t\n"),
    ("a", "a"), ("a", "b"), ("word", "word"), ("The cat sat.", "The cat sat."), ("The cat", "the CAT!"),
    ("café naïve résumé", "cafe naive resume"), ("日本語のテキスト", "日本語のテキスト"), ("Ünïcödé only", "nc d only"),
    ("İstanbul \u212aelvin", "istanbul kelvin"), ("3.14 is pi", "3 14 is pi"), ("e-mail me", "email me"),
    ("running runs ran", "run running"), ("studies studying", "study studies"), ("cats cat", "cat cats"),
    ("the the the the", "the"), ("a b c d e f g", "g f e d c b a"), ("a b a b a b", "b a b a"),
    ("Generate a list of ten fruits.", "Generate a list of 10 fruits"),
    (" ".join(["x"] * 70 + ["y"] * 10), " ".join(["y"] * 10 + ["x"] * 70)),  # longer than one 64-bit word
]


@pytest.mark.parametrize("stem", [False, True])
@pytest.mark.parametrize("a,b", EDGE_PAIRS)
def test_edge_cases_equal_rouge_score(a, b, stem):
    assert rouge_l_f(a, b, use_stemmer=stem) == ref_f(a, b, stem)
    assert rouge_l_f(b, a, use_stemmer=stem) == ref_f(b, a, stem)


@pytest.mark.parametrize("stem", [False, True])
def test_batch_scores_equal_rouge_score(stem):
    texts = [a for a, _ in EDGE_PAIRS] + [b for _, b in EDGE_PAIRS]
    m = rouge_l_matrix(texts, texts, use_stemmer=stem)
    assert m.tolist() == [[ref_f(a, b, stem) for b in texts] for a in texts]


WORDS = ["the", "a", "cat", "cats", "running", "runs", "ran", "write", "writing", "poem", "poems", "über",
         "naïve", "x1", "42", "!", "...", "-", "é", "日本", "generalization", "general"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=80), st.lists(st.sampled_from(WORDS), max_size=80),
       st.booleans())
def test_property_random_token_strings(a, b, stem):
    ta, tb = " ".join(a), " ".join(b)
    assert rouge_l_f(ta, tb, use_stemmer=stem) == ref_f(ta, tb, stem)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60), st.booleans())
def test_property_tokens_equal_rouge_score(text, stem):
    expected = rouge_tokenize.tokenize(text, porter.PorterStemmer() if stem else None)
    assert RougeTokens(stem).tokenize(text) == expected


def _shared_texts() -> list[str]:
    seeds = [json.loads(ln)["instruction"] for ln in
             shared_data("self_instruct", "seed_tasks.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
    alpaca = [r["instruction"] for r in json.loads(shared_data("alpaca", "alpaca_first2000.json").read_text("utf-8"))]
    sst2 = [ln.split(" ", 1)[1] for ln in
            shared_data("classification", "sst2", "stsa.binary.train").read_text("utf-8").splitlines() if " " in ln]
    return seeds + alpaca + sst2


@pytest.mark.parametrize("stem", [False, True])
def test_6000_random_pairs_from_shared_data_equal_rouge_score(stem):
    texts = _shared_texts()
    rnd = random.Random(7)
    pairs = [(rnd.choice(texts), rnd.choice(texts)) for _ in range(6_000)]
    mismatches = [(a, b) for a, b in pairs if rouge_l_f(a, b, use_stemmer=stem) != ref_f(a, b, stem)]
    assert mismatches == []


def _near_duplicates(n: int, seed: int) -> list[str]:
    """Instruction-like texts with many near-duplicates, ties and degenerate rows."""
    rnd = random.Random(seed)
    verbs = ["Write", "Generate", "List", "Explain", "Summarize", "Translate", "Classify", "Describe"]
    things = ["a poem", "three facts", "the sentence", "this review", "a recipe", "the main idea", "ten fruits"]
    tails = ["about the sea", "in French", "for children", "in one word", "as a table", "briefly", ""]
    out: list[str] = []
    for _ in range(n):
        r = rnd.random()
        if out and r < 0.3:
            words = rnd.choice(out).split()
            if words:
                del words[rnd.randrange(len(words))]
            out.append(" ".join(words) + rnd.choice(["", ".", " please"]))
        elif r < 0.35:
            out.append(rnd.choice(["", "...", "?", "é", "x", "Runs!", "running"]))
        else:
            out.append(f"{rnd.choice(verbs)} {rnd.choice(things)} {rnd.choice(tails)}".strip())
    return out


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("stem", [False, True])
def test_greedy_filter_equals_self_instruct_loop(threshold, stem):
    texts = _near_duplicates(400, seed=1)
    seeds = _near_duplicates(20, seed=2)
    res = greedy_filter(texts, threshold, seeds, use_stemmer=stem)
    assert_same(res, self_instruct_reference(texts, seeds, threshold, stem))


def test_greedy_filter_equal_across_block_sizes(monkeypatch):
    texts, seeds = _near_duplicates(300, seed=3), _near_duplicates(5, seed=4)
    expected = self_instruct_reference(texts, seeds, 0.5)
    monkeypatch.setattr(pool_module, "_BLOCK_MIN", 1)
    for cells, block_max, recoverable in ((1, 1, 1 << 20), (64, 7, 0), (1 << 24, 256, 1 << 20)):
        monkeypatch.setattr(pool_module, "_CELLS", cells)
        monkeypatch.setattr(pool_module, "_BLOCK_MAX", block_max)
        monkeypatch.setattr(pool_module, "_RECOVERABLE_TOKENS", recoverable)  # 0: every LCS recomputed
        assert_same(greedy_filter(texts, 0.5, seeds, workers=1), expected)


def test_pool_filters_batch_by_batch_like_one_pass():
    texts, seeds = _near_duplicates(200, seed=5), _near_duplicates(10, seed=6)
    pool = RougePool(seeds)
    first, second = pool.filter_greedy(texts[:90], 0.6), pool.filter_greedy(texts[90:], 0.6)
    whole = greedy_filter(texts, 0.6, seeds)
    assert np.concatenate([first.keep, second.keep]).tolist() == whole.keep.tolist()
    assert np.concatenate([first.nearest, second.nearest]).tolist() == whole.nearest.tolist()
    assert len(pool) == len(seeds) + int(whole.keep.sum())


def test_score_equal_to_threshold_is_a_near_duplicate():
    # "b d" vs "b c": LCS 1 of 2 tokens each side, so F is exactly 0.5.
    assert rouge_l_f("b d", "b c") == 0.5
    assert greedy_filter(["b c", "b d"], 0.5).keep.tolist() == [True, False]
    assert greedy_filter(["b c", "b d"], 0.51).keep.tolist() == [True, True]
    assert reference_filter(["b d"], ["b c"], threshold=0.5).keep.tolist() == [False]


def test_reference_filter_takes_best_and_first_nearest_reference():
    reference = ["Write a poem about the sea", "write a poem about the sea", "List three facts"]
    texts = ["Write a poem about the sea.", "List three odd facts about big cats", "Cook pasta", "List three facts"]
    res = reference_filter(texts, reference, threshold=0.7)
    assert res.keep.tolist() == [False, True, True, False]
    assert res.nearest.tolist() == [0, 2, -1, 2]  # a tie between 0 and 1 names the first
    assert res.max_score.tolist() == [max(ref_f(t, r, False) for r in reference) for t in texts]


def test_greedy_on_shared_instructions_equals_self_instruct_loop():
    # 300 Alpaca instructions after the 175 seeds; benchmarks/rouge_filter.py checks 3,000 (too slow here).
    texts = _shared_texts()
    seeds, instructions = texts[:175], texts[175:475]
    expected = self_instruct_reference(instructions, seeds, 0.5)
    assert 0 < expected[0].sum() < len(instructions)
    assert_same(greedy_filter(instructions, 0.5, seeds), expected)


# -- the step ------------------------------------------------------------------------------------
RECIPE = """
name: rouge-demo
steps:
  - id: seeds
    type: source.inline
    rows:
      - {instruction: "Write a poem about the sea."}
      - {instruction: "List three facts about cats."}
  - id: new
    type: source.inline
    rows:
      - {instruction: "Write a short poem about the sea."}
      - {instruction: "Translate the sentence into French."}
      - {instruction: "Translate this sentence into French!"}
      - {instruction: "Cook pasta with garlic."}
  - id: dedup
    type: filter.rouge_l
    from: new
    reference: seeds
    %s
outputs:
  kept: dedup
  seeds: seeds
"""


def test_step_drops_near_duplicates_into_rejections(write, catalog):
    recipe = write("r.yaml", RECIPE % "threshold: 0.7")
    api.build(recipe, catalog=catalog)
    kept = api.read("kept", catalog=catalog)
    assert kept["instruction"].to_list() == ["Translate the sentence into French.", "Cook pasta with garlic."]
    assert {"rouge_l_max", "rouge_l_nearest_id"} <= set(kept.columns)
    rej = api.sql("select r.reason, r.score, r.detail, r.row_id from rejections r where r.step_id = 'dedup' "
                  "order by r.score desc", catalog=catalog)
    assert rej["reason"].to_list() == ["rouge_l", "rouge_l"]
    translate_id = kept.filter(kept["instruction"].str.starts_with("Translate"))["id"][0]
    sea = "Write a short poem about the sea."
    assert rej["score"].to_list() == [ref_f(sea, "Write a poem about the sea.", False),
                                      ref_f("Translate this sentence into French!", "Translate the sentence into French.",
                                            False)]
    assert rej["detail"][1] == translate_id  # the nearest kept row
    seeds = api.read("seeds", catalog=catalog)
    assert rej["detail"][0] == seeds.filter(seeds["instruction"] == "Write a poem about the sea.")["id"][0]
    photo = kept.filter(kept["instruction"].str.starts_with("Cook")).row(0, named=True)
    # kept rows: best F below the score floor (default: the threshold) is recorded as null
    assert photo["rouge_l_max"] is None and photo["rouge_l_nearest_id"] is None


def test_step_reference_mode_with_two_inputs(write, catalog):
    recipe = write("r.yaml", (RECIPE % "mode: reference").replace("    from: new\n    reference: seeds\n",
                                                                "    from: [new, seeds]\n"))
    api.build(recipe, catalog=catalog)
    kept = api.read("kept", catalog=catalog)
    # reference mode does not compare the two Translate rows with each other
    assert kept["instruction"].to_list() == ["Translate the sentence into French.", "Translate this sentence into French!",
                                             "Cook pasta with garlic."]


@pytest.mark.parametrize("params,message", [
    ("threshold: 1.5", "steps[2].threshold: Input should be less than or equal to 1"),
    ("reference_column: text", "steps[2].reference_column: reference input 'seeds' has no column 'text'"),
    ("workers: 0", "steps[2].workers"),
])
def test_step_params_are_validated(write, catalog, params, message):
    recipe = write("r.yaml", RECIPE % params)
    with pytest.raises(UserError) as e:
        api.build(recipe, catalog=catalog)
    assert message in str(e.value)


def test_reference_mode_needs_a_reference(write, catalog):
    recipe = write("r.yaml", (RECIPE % "mode: reference").replace("    reference: seeds\n", ""))
    with pytest.raises(UserError, match=r"steps\[2\]\.mode: mode `reference` needs a reference input"):
        api.build(recipe, catalog=catalog)
