"""Classification-prompt evaluation by label log-likelihood, on a tiny random Llama built in the test."""

from __future__ import annotations

import json

import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_lm import save_tiny, tiny_lm, tiny_tokenizer  # noqa: E402

from dataforge.errors import UserError  # noqa: E402
from dataforge.train.clf_eval import ScoringOptions, evaluate_classification, label_logprobs  # noqa: E402


def reference_logprob(model, tok, prompt: str, label: str) -> float:
    """log p(label | prompt) from one unpadded forward pass."""
    ctx = tok(prompt)["input_ids"]
    cont = tok(" " + label, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))


def test_batched_left_padded_scores_equal_unpadded_ones():
    model, tok = tiny_lm(), tiny_tokenizer()
    prompts = ["Input : the movie was great . Label :", "Text : bad", "Input : a film is fine . the plot . Answer :"]
    labels = [["foo", "bar baz"], ["qux", "zap zip one"], ["two", "three"]]
    got = label_logprobs(model, tok, prompts, labels, ScoringOptions(batch_size=4))
    for p, ls, row in zip(prompts, labels, got):
        for label, value in zip(ls, row):
            assert value == pytest.approx(reference_logprob(model, tok, p, label), abs=1e-4)
    mean = label_logprobs(model, tok, prompts, labels, ScoringOptions(batch_size=1, score="mean"))
    assert mean[1][1] == pytest.approx(got[1][1] / 3, abs=1e-4)  # "zap zip one" has three tokens


def test_the_label_the_model_prefers_is_the_answer():
    model, tok = tiny_lm(), tiny_tokenizer()
    # Make the model all but certain that the next token is "great", whatever came before.
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[tok.convert_tokens_to_ids("great")] = 8.0
    model.lm_head = head
    df = pl.DataFrame({
        "task": ["sst2", "sst2", "mr"],
        "prompt": ["Input : the movie\nLabel :", "Input : the plot\nLabel :", "Text : a film\nAnswer :"],
        "target": ["great", "awful", "foo"],
        "symbol_map": [json.dumps({"positive": "great", "negative": "awful"}),
                       json.dumps({"positive": "great", "negative": "awful"}),
                       json.dumps({"positive": "great", "negative": "foo"})],
    })
    res = evaluate_classification(df, model, tok)
    assert [p["predicted"] for p in res.predictions] == ["great", "great", "great"]
    assert res.correct == 1 and res.accuracy == pytest.approx(1 / 3)
    assert res.chance == pytest.approx(0.5)
    assert res.by_task == {"mr": {"accuracy": 0.0, "rows": 1}, "sst2": {"accuracy": 0.5, "rows": 2}}


def test_label_sets_and_bad_rows():
    model, tok = tiny_lm(), tiny_tokenizer()
    df = pl.DataFrame({"prompt": ["Input : a", "Input : b"], "completion": [" foo", " bar"]})
    res = evaluate_classification(df, model, tok)  # no label column: the distinct targets
    assert {p["target"] for p in res.predictions} == {"foo", "bar"}
    assert all(set(p["logprobs"]) == {"bar", "foo"} for p in res.predictions)
    with pytest.raises(UserError, match=r"row 1: target 'bar' is not among its labels \['foo', 'baz'\]"):
        evaluate_classification(df, model, tok, labels=["foo", "baz"])
    bad = df.with_columns(pl.Series("symbol_map", ['{"a": "foo", "b": "bar"}', "not json"]))
    with pytest.raises(UserError, match="row 1: column 'symbol_map' holds no label set"):
        evaluate_classification(bad, model, tok)
    with pytest.raises(UserError, match="no column 'text'"):
        evaluate_classification(df, model, tok, prompt_column="text")


def test_cli_on_a_catalog_dataset(tmp_path, write, catalog, cli):
    model_dir = save_tiny(tmp_path / "tiny")
    recipe = write("r.yaml", """
        name: clf
        steps:
          - id: src
            type: source.inline
            rows:
              - {prompt: "Input : the movie was great . Label :", target: foo, symbol_map: '{"positive": "foo", "negative": "bar"}'}
              - {prompt: "Input : the acting was awful . Label :", target: bar, symbol_map: '{"positive": "foo", "negative": "bar"}'}
              - {prompt: "Input : the plot is fine . Label :", target: zap, symbol_map: '{"positive": "zap", "negative": "qux"}'}
        outputs:
          prompts: src
        """)
    assert cli("build", recipe, "--catalog", catalog).exit_code == 0
    out = tmp_path / "clf.json"
    r = cli("eval-classification", "prompts", "--model", model_dir, "--out", out, "--catalog", catalog)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["metrics"]["rows"] == 3 and len(res["predictions"]) == 3
    for p in res["predictions"]:
        assert p["predicted"] == max(p["logprobs"], key=p["logprobs"].get)
    assert f"accuracy {res['metrics']['accuracy']:.4f}" in r.output
    runs = json.loads(cli("sql", "select method, status, metrics from runs", "--format", "json",
                          "--catalog", catalog).output)
    assert runs[0]["method"] == "classification" and runs[0]["status"] == "done"
    assert json.loads(runs[0]["metrics"])["accuracy"] == res["metrics"]["accuracy"]


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size: Input should be greater than or equal to 1"),
    (["--score", "median"], "--score: Input should be 'sum' or 'mean'"),
    (["--device", "gpu0"], "--device: 'gpu0' is not a torch device"),  # was an internal RuntimeError
    # devices torch names but this machine (torch built for CPU only) cannot use: internal errors, after loading
    (["--device", "mps"], "--device: 'mps': torch cannot use this device here"),
    (["--device", "xpu:0"], "--device: 'xpu:0': torch cannot use this device here"),
    (["--labels-column", "nope"], "no column 'nope' (--labels-column)"),
    (["--adapter", "/nonexistent/adapter"], "--adapter /nonexistent/adapter: not a peft adapter directory"),
])
def test_cli_bad_options_exit_2(tmp_path, write, catalog, cli, args, message):
    model_dir = save_tiny(tmp_path / "tiny")
    recipe = write("r.yaml", """
        name: clf
        steps:
          - id: src
            type: source.inline
            rows: [{prompt: "Input : a", target: foo}, {prompt: "Input : b", target: bar}]
        outputs:
          prompts: src
        """)
    cli("build", recipe, "--catalog", catalog)
    r = cli("eval-classification", "prompts", "--model", model_dir, "--catalog", catalog, *args)
    assert r.exit_code == 2
    assert message in r.output


def test_a_cuda_device_this_machine_does_not_have_is_refused_when_the_flags_are_read(monkeypatch):
    # `cuda:3` on a one-GPU machine passed the check and failed once the model was moved (an internal error).
    import torch

    from dataforge.train.clf_run import ClfEvalConfig
    from dataforge.train.options import from_flags

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert from_flags(ClfEvalConfig, data="d", model="m", device="cuda:0").device == "cuda:0"
    assert from_flags(ClfEvalConfig, data="d", model="m", device="cuda").device == "cuda"
    with pytest.raises(UserError, match=r"--device: 'cuda:3': this machine has 1 CUDA device\(s\) \(cuda:0 to cuda:0\)"):
        from_flags(ClfEvalConfig, data="d", model="m", device="cuda:3")
