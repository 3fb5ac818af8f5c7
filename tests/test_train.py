"""`dataforge train` mechanics on a tiny randomly initialised Llama (CPU, seconds): completion-only loss,
packing, adapter round trip, resume after a kill, NAT stage 2, NCE arithmetic, config errors, the
missing extra, repeating a run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

pytest.importorskip("peft", reason="the `train` extra (peft, transformers) is not installed")
import torch  # noqa: E402

from conftest import copy_catalog  # noqa: E402
from dataforge import api  # noqa: E402
from dataforge.train import data as D  # noqa: E402
from train_fixtures import make_tiny_model, rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# One worker builds the shared tiny model, catalog and export (`world`) once for the whole module.
pytestmark = pytest.mark.xdist_group("train")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model directory, a catalog with 80 prompt/completion rows, and an export of them."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    # Tiny matrices: one thread is ~100x faster than two when the machine's cores are busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("train")
    model_dir = make_tiny_model(root / "model")
    recipe = root / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "steps": [{"id": "pc", "type": "source.inline", "rows": rows(80)}],
                                      "outputs": {"arith": "pc"}}), encoding="utf-8")
    cat = root / "cat.duckdb"
    api.build(recipe, catalog=cat)
    mix = root / "m.yaml"
    mix.write_text("name: m\nseed: 1\nsplit: {validation_fraction: 0.2}\nkeep_columns: [correct]\n"
                   "sources:\n  - dataset: arith\n", encoding="utf-8")
    api.export(mix, out=root / "export", catalog=cat)
    yield {"root": root, "model": model_dir, "cat": cat, "export": root / "export"}
    torch.set_num_threads(threads)


def _config(world, tmp_path, name: str = "t.yaml", **overrides) -> Path:
    cfg = {"method": "sft", "base_model": str(world["model"]), "data": {"export": str(world["export"])},
           "output_dir": str(tmp_path / "out"),
           "train": {"max_steps": 8, "batch_size": 4, "learning_rate": 0.01, "log_every": 4, "seed": 3}}
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return p


def _tiny(world):
    from dataforge.train.model import load_base, resolve_base

    model, tok = load_base(resolve_base(str(world["model"])), torch.device("cpu"))
    return model, tok


def test_prompt_tokens_contribute_nothing_to_the_loss(world):
    from dataforge.train.loop import token_loss_sum

    model, tok = _tiny(world)
    row = {"format": "prompt_completion", "prompt": "question one plus two the answer", "completion": " blue"}
    ex = D.encode(row, tok, completion_only=True, max_length=64)
    n_prompt = len(tok("question one plus two the answer", add_special_tokens=False)["input_ids"])
    assert ex.labels[:n_prompt] == [D.IGNORE] * n_prompt and ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    batch = D.pad_batch([ex], tok.pad_token_id)
    logits = model(**batch.model_inputs()).logits.detach().requires_grad_(True)
    token_loss_sum(logits, batch.labels).backward()
    # Logits at positions that predict prompt tokens get no gradient; those predicting the completion do.
    per_pos = logits.grad[0].abs().sum(-1)
    assert torch.all(per_pos[: n_prompt - 1] == 0) and torch.all(per_pos[n_prompt - 1:-1] > 0)
    full = D.encode(row, tok, completion_only=False, max_length=64)
    assert full.labels == full.input_ids  # the switch trains on the prompt too


def test_chat_rows_learn_only_the_assistant_reply(world):
    _, tok = _tiny(world)
    row = {"format": "messages", "messages": [{"role": "system", "content": "be good"},
                                              {"role": "user", "content": "the cat sat"},
                                              {"role": "assistant", "content": "yes"}]}
    ex = D.encode(row, tok, completion_only=True, max_length=64)
    learnt = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != D.IGNORE]
    assert tok.decode(learnt).split() == ["yes", "</s>"]


def test_packing_keeps_examples_apart(world):
    from dataforge.train.loop import token_loss_sum

    model, tok = _tiny(world)
    model.eval()
    exs = [D.encode({"format": "prompt_completion", **r}, tok, completion_only=False, max_length=64)
           for r in rows(5, seed=9)]
    bins = D.pack(exs, 40)
    assert len(bins) < len(exs)  # something was packed together
    packed = D.packed_batch(bins, tok.pad_token_id)
    assert packed.real_tokens == sum(len(e.input_ids) for e in exs)
    with torch.no_grad():
        out = model(**packed.model_inputs()).logits
        total_alone = 0.0
        for row_i, b in enumerate(bins):
            at = 0
            for e in b:
                alone_batch = D.pad_batch([e], tok.pad_token_id)
                alone = model(**alone_batch.model_inputs()).logits[0]
                k = len(e.input_ids)
                torch.testing.assert_close(out[row_i, at:at + k], alone, atol=1e-5, rtol=1e-5)
                assert packed.position_ids[row_i, at].item() == 0
                total_alone += float(token_loss_sum(alone[None], alone_batch.labels))
                at += k
        # Same loss: no label is predicted across an example boundary.
        assert float(token_loss_sum(out, packed.labels)) == pytest.approx(total_alone, rel=1e-5)


def test_train_saves_a_peft_adapter_that_loads_with_identical_logits(world, tmp_path):
    from peft import PeftModel

    from dataforge.train.model import load_trained

    cfg = _config(world, tmp_path, train={"packing": True, "max_length": 48, "eval_every": 4})
    res = api.train(cfg, catalog=world["cat"])
    assert (res.adapter_path / "adapter_config.json").is_file()
    rec = api.run_record(res.run_id, catalog=world["cat"])
    assert rec["status"] == "done" and rec["method"] == "sft" and rec["seed"] == 3
    assert len(rec["data"][0]["manifest_sha256"]) == 64 and len(rec["base_model_sha256"]) == 64
    assert rec["config"]["train"]["packing"] is True and rec["wall_seconds"] > 0
    assert len(rec["losses"].filter(rec["losses"]["split"] == "train")) == 8
    assert rec["metrics"]["eval_loss"] is not None and rec["adapter_path"] == str(res.adapter_path)

    trained, tok = load_trained(res.output_dir)
    base, _ = _tiny(world)
    direct = PeftModel.from_pretrained(base, str(res.adapter_path)).eval()
    batch = D.pad_batch([D.encode({"format": "prompt_completion", **rows(1, seed=5)[0]}, tok,
                                  completion_only=True, max_length=64)], tok.pad_token_id)
    with torch.no_grad():
        a = trained(**batch.model_inputs()).logits
        b = direct(**batch.model_inputs()).logits
        plain = _tiny(world)[0](**batch.model_inputs()).logits
    assert torch.equal(a, b)
    assert not torch.allclose(a, plain)  # the adapter did learn something


def _train_losses(cat, run_id):
    losses = api.run_record(run_id, catalog=cat)["losses"]
    return losses.filter(losses["split"] == "train")["loss"].to_list()


def test_resume_after_a_kill_continues_with_the_same_loss_curve(world, tmp_path):
    train = {"max_steps": 10, "checkpoint_every": 4, "seed": 5}
    whole = _config(world, tmp_path, "whole.yaml", output_dir=str(tmp_path / "whole"), train=train,
                    lora={"dropout": 0.3})
    res = api.train(whole, catalog=world["cat"])
    reference = _train_losses(world["cat"], res.run_id)

    cut = _config(world, tmp_path, "cut.yaml", output_dir=str(tmp_path / "cut"), train=train, lora={"dropout": 0.3})
    # The process dies (os._exit, no cleanup) after logging step 6: two steps past the step-4 checkpoint.
    script = textwrap.dedent(f"""
        import os
        from dataforge.train.runs import RunRecord
        original = RunRecord.loss
        def loss(self, **kw):
            original(self, **kw)
            if kw["step"] == 6:
                self.flush()
                os._exit(9)
        RunRecord.loss = loss
        from dataforge import api
        api.train({str(cut)!r}, catalog={str(world["cat"])!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert not (tmp_path / "cut" / "run.json").exists()

    res2 = api.train(cut, catalog=world["cat"], resume=True)
    rec = api.run_record(res2.run_id, catalog=world["cat"])
    assert rec["status"] == "done"
    assert _train_losses(world["cat"], res2.run_id) == pytest.approx(reference, rel=1e-5, abs=1e-6)
    # A finished run is not resumed, and a fresh run does not overwrite it.
    with pytest.raises(Exception, match="already finished"):
        api.train(cut, catalog=world["cat"], resume=True)
    with pytest.raises(Exception, match="already holds a finished run"):
        api.train(cut, catalog=world["cat"])


def _killed_at_step_3(cfg: Path, cat: Path, monkeypatch) -> None:
    """Train `cfg` and stop it at step 3 as a kill would (after the checkpoint of step 2)."""
    from dataforge.train.runs import RunRecord

    original = RunRecord.loss

    def loss(self, **kw):
        original(self, **kw)
        if kw["step"] == 3:
            raise SystemExit("killed")

    monkeypatch.setattr(RunRecord, "loss", loss)
    with pytest.raises(SystemExit):
        api.train(cfg, catalog=cat)
    monkeypatch.setattr(RunRecord, "loss", original)


def test_resume_refuses_data_that_changed_since_the_checkpoint(world, tmp_path, monkeypatch):
    import shutil

    exp = tmp_path / "exp"
    shutil.copytree(world["export"], exp)
    cfg = _config(world, tmp_path, data={"export": str(exp)}, train={"max_steps": 6, "checkpoint_every": 2})
    _killed_at_step_3(cfg, world["cat"], monkeypatch)
    # The export is made again, from another seed, into the same directory: other rows, other batches.
    mix = tmp_path / "m.yaml"
    mix.write_text("name: m\nseed: 2\nsplit: {validation_fraction: 0.5}\nsources:\n  - dataset: arith\n",
                   encoding="utf-8")
    api.export(mix, out=exp, catalog=world["cat"])
    with pytest.raises(Exception, match="--resume: cannot resume run .*: its train data changed"):
        api.train(cfg, catalog=world["cat"], resume=True)
    assert not (tmp_path / "out" / "run.json").exists()


def test_resume_refuses_a_dataset_stored_again_with_other_rows_of_the_same_count(world, tmp_path, monkeypatch):
    # `build --force` / `--retry-failed` store a dataset again under its fingerprint and version: the
    # run's record (dataset, version, fingerprint, rows) can match although the rows do not.
    import duckdb

    from dataforge.catalog.store import output_table

    cat = copy_catalog(world["cat"], tmp_path / "cat" / "c.duckdb")
    cfg = _config(world, tmp_path, data={"export": None, "dataset": "arith"},
                  train={"max_steps": 6, "checkpoint_every": 2})
    _killed_at_step_3(cfg, cat, monkeypatch)
    fp = api.dataset_info("arith", catalog=cat)["fingerprint"]
    with duckdb.connect(str(cat)) as con:
        con.execute(f"update {output_table(fp)} set completion = completion || '!' where prompt = "
                    f"(select min(prompt) from {output_table(fp)})")
    with pytest.raises(Exception, match="cannot resume run .*: its train data changed \\(the rows' content\\)"):
        api.train(cfg, catalog=cat, resume=True)
    assert not (tmp_path / "out" / "run.json").exists()


def test_ctrl_c_says_what_is_kept_and_how_to_resume(world, tmp_path, cli, monkeypatch):
    from dataforge.train.runs import RunRecord

    original = RunRecord.loss

    def loss(self, **kw):
        original(self, **kw)
        if kw["step"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunRecord, "loss", loss)
    cfg = _config(world, tmp_path, train={"max_steps": 4, "log_every": 1, "checkpoint_every": 2})
    r = cli("train", cfg, "--catalog", world["cat"])
    assert r.exit_code == 130
    assert "completed checkpoints are kept" in r.output and "(the last: main-step-000002)" in r.output
    assert f"`dataforge train {cfg} --resume` continues" in r.output
    last = api.runs(catalog=world["cat"], limit=1).row(0, named=True)
    assert last["status"] == "interrupted"
    monkeypatch.setattr(RunRecord, "loss", original)
    assert api.train(cfg, catalog=world["cat"], resume=True).run_id == last["run_id"]

    monkeypatch.setattr(RunRecord, "loss", loss)
    cfg = _config(world, tmp_path, "none.yaml", output_dir=str(tmp_path / "none"),
                  train={"max_steps": 4, "log_every": 1})
    r = cli("train", cfg, "--catalog", world["cat"])
    assert r.exit_code == 130
    assert "no checkpoint was written yet (train.checkpoint_every is not set)" in r.output
    assert f"`dataforge train {cfg}` starts the run over" in r.output and "--resume" not in r.output


def test_nat_stage2_trains_only_the_positive_lora_and_units(world, tmp_path):
    from dataforge.train.config import LoraSettings, NatSettings, TrainSettings
    from dataforge.train.loop import train_loop
    from dataforge.train.nat import NATModel
    from dataforge.train.runs import RunRecord
    from dataforge.train.sft import lm_loss, train_sft

    model, tok = _tiny(world)
    exs = D.encode_all([{"format": "prompt_completion", **r} for r in rows(16)], tok, completion_only=True,
                       max_length=64)[0]
    ts = TrainSettings(max_steps=3, batch_size=4, learning_rate=0.01, log_every=100)
    lora = LoraSettings()
    record = RunRecord.start(tmp_path / "c.duckdb", kind="train", method="nat", config={})
    peft_model, _ = train_sft(model, examples=exs, eval_examples=[], lora=lora, ts=ts, pad_id=tok.pad_token_id,
                              device=torch.device("cpu"), record=record, output_dir=tmp_path,
                              adapter_dir=tmp_path / "negative", log=lambda m: None)
    nat = NATModel.build(peft_model.unload(), tmp_path / "negative", lora, NatSettings(unit_width=16), seed=1)
    assert len(nat.layer_names) == 4  # q_proj and v_proj of two layers
    before = {n: p.detach().clone() for n, p in nat.named_parameters()}
    trainable = {n for n, p in nat.named_parameters() if p.requires_grad}
    parts = nat.parts()
    assert trainable == {n for n, _ in parts["positive"]} | {n for n, _ in parts["units"]}
    train_loop(model=nat, loss_fn=lm_loss(nat), batches=D.Batches(exs, batch_size=4, seed=0, packing=False,
                                                                   max_length=64, pad_id=tok.pad_token_id),
               ts=ts.model_copy(update={"max_steps": 5}), steps=5, device=torch.device("cpu"), record=record,
               output_dir=tmp_path, stage="positive", log=lambda m: None)
    after = dict(nat.named_parameters())
    for n, _ in parts["negative"] + parts["base"]:
        assert torch.equal(before[n], after[n]), f"{n} changed"
    assert any(not torch.equal(before[n], after[n]) for n, _ in parts["positive"])
    assert any(not torch.equal(before[n], after[n]) for n, _ in parts["units"])

    unit = next(iter(nat.units.values()))
    x, hp, hn = (torch.randn(64, 7, unit.query.in_features) * 50 for _ in range(3))
    hp, hn = hp[..., : unit.key.in_features], hn[..., : unit.key.in_features]
    alpha = unit.alpha(x, hp, hn)
    assert alpha.min() >= -0.5 and alpha.max() <= 0.5 and alpha.std() > 0

    # The three modes give three different models; base mode is the frozen base itself.
    batch = D.pad_batch(exs[:2], tok.pad_token_id)
    nat.eval()
    with torch.no_grad():
        outs = {}
        for mode in ("mixed", "negative", "base"):
            nat.set_mode(mode)
            outs[mode] = nat(**batch.model_inputs()).logits
        plain = _tiny(world)[0](**batch.model_inputs()).logits
    torch.testing.assert_close(outs["base"], plain)
    assert not torch.allclose(outs["mixed"], outs["negative"]) and not torch.allclose(outs["negative"], plain)


def test_wrapping_and_loading_adapters_prints_no_deprecation_warning(world, tmp_path):
    import warnings

    from dataforge.train.config import LoraSettings, NatSettings
    from dataforge.train.nat import NATModel
    from dataforge.train.sft import add_lora

    lora = LoraSettings()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        peft_model = add_lora(_tiny(world)[0], lora, seed=0)
        peft_model.save_pretrained(str(tmp_path / "negative"))
        nat = NATModel.build(peft_model.unload(), tmp_path / "negative", lora, NatSettings(unit_width=8), seed=1)
        nat.save(tmp_path)
        NATModel.load(_tiny(world)[0], tmp_path)
    assert not [str(w.message) for w in seen if "is_gradient_checkpointing" in str(w.message)]


def test_nce_weight_and_loss_on_hand_computed_logits():
    import math

    from dataforge.train.nce import nce_terms

    # One sample, 3 positions (the last has no target), vocab 2; only position 1's target (label at 2) counts.
    student = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])
    pos = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [0.0, 0.0]]])  # P_pos = (1/4, 3/4)
    neg = torch.tensor([[[5.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])  # P_neg = (3/4, 1/4)
    labels = torch.tensor([[-100, -100, 1]])
    t = nce_terms(student, pos, neg, labels, temperature=1.0)
    kl = 0.75 * math.log(0.75 / 0.25) + 0.25 * math.log(0.25 / 0.75)
    beta = math.tanh(kl)
    log_s = [1 - math.log(math.e + 1), -math.log(math.e + 1)]  # log_softmax([1, 0])
    ce = -log_s[1]
    kd = -(0.25 * log_s[0] + 0.75 * log_s[1])
    assert t.beta.item() == pytest.approx(beta, rel=1e-6)
    assert t.ce.item() == pytest.approx(ce, rel=1e-6) and t.kd.item() == pytest.approx(kd, rel=1e-6)
    assert t.loss.item() == pytest.approx(0.5 * ce + 0.5 * (0.5 + beta) * kd, rel=1e-6)
    # Temperature T: soft targets and student both at T, the KD term scaled by T^2.
    t2 = nce_terms(student, pos, neg, labels, temperature=2.0)
    ps = torch.softmax(pos[0, 1] / 2, -1)
    ls = torch.log_softmax(student[0, 1] / 2, -1)
    assert t2.kd.item() == pytest.approx(float(-(ps * ls).sum() * 4), rel=1e-6)
    assert t2.beta.item() == pytest.approx(beta, rel=1e-6)  # the weight does not depend on T


def test_nat_then_nce_end_to_end(world, tmp_path):
    from dataforge.train.model import load_trained

    nat_cfg = _config(world, tmp_path, "nat.yaml", method="nat", output_dir=str(tmp_path / "nat"),
                      data={"export": str(world["export"]), "where": {"correct": True}},
                      negative_data={"export": str(world["export"]), "where": {"correct": False}},
                      nat={"unit_width": 8, "negative_steps": 3}, train={"max_steps": 4})
    res = api.train(nat_cfg, catalog=world["cat"])
    stages = api.run_record(res.run_id, catalog=world["cat"])["losses"]["stage"].to_list()
    assert stages.count("negative") == 3 and stages.count("positive") >= 4
    nat, _ = load_trained(res.output_dir, mode="negative")
    assert nat.mode == "negative"
    nce_cfg = _config(world, tmp_path, "nce.yaml", method="nce", output_dir=str(tmp_path / "nce"),
                      data={"export": str(world["export"]), "where": {"correct": True}},
                      nce={"nat_dir": str(tmp_path / "nat"), "temperature": 2.0}, train={"max_steps": 3})
    res2 = api.train(nce_cfg, catalog=world["cat"])
    rec = api.run_record(res2.run_id, catalog=world["cat"])
    assert rec["method"] == "nce" and 0 <= rec["metrics"]["mean_beta"] < 1
    assert (res2.adapter_path / "adapter_config.json").is_file()


def test_nat_resumed_in_stage_2_keeps_the_metrics_of_stage_1(world, tmp_path, monkeypatch):
    from dataforge.train.runs import RunRecord

    cfg = _config(world, tmp_path, "nat.yaml", method="nat", output_dir=str(tmp_path / "nat"),
                  data={"export": str(world["export"]), "where": {"correct": True}},
                  negative_data={"export": str(world["export"]), "where": {"correct": False}},
                  nat={"unit_width": 8, "negative_steps": 3}, train={"max_steps": 4, "checkpoint_every": 2})
    original = RunRecord.loss

    def loss(self, **kw):
        original(self, **kw)
        if self.stage == "positive" and kw["step"] == 3:
            raise SystemExit("killed")

    monkeypatch.setattr(RunRecord, "loss", loss)
    with pytest.raises(SystemExit):
        api.train(cfg, catalog=world["cat"])
    monkeypatch.setattr(RunRecord, "loss", original)
    res = api.train(cfg, catalog=world["cat"], resume=True)
    assert res.metrics["negative_steps"] == 3 and res.metrics["negative_train_loss"] is not None
    assert api.run_record(res.run_id, catalog=world["cat"])["metrics"]["negative_steps"] == 3


def test_repeat_a_run_from_its_record(world, tmp_path, cli):
    res = api.train(_config(world, tmp_path, train={"max_steps": 3}), catalog=world["cat"])
    again = api.train(repeat=res.run_id, output_dir=tmp_path / "again", catalog=world["cat"])
    assert _train_losses(world["cat"], again.run_id) == pytest.approx(_train_losses(world["cat"], res.run_id))
    assert api.run_record(again.run_id, catalog=world["cat"])["repeat_of"] == res.run_id
    r = cli("train", "--repeat", res.run_id, "--catalog", world["cat"])
    assert r.exit_code == 2 and "--out" in r.output


def test_a_validation_split_without_matching_rows_means_no_eval_loss(world, tmp_path):
    # Whole `correct` groups go to one side, so the validation split holds no row that `where` keeps.
    mix = tmp_path / "g.yaml"
    mix.write_text("name: g\nseed: 1\nsplit: {validation_fraction: 0.3, group_column: correct}\n"
                   "keep_columns: [correct]\nsources:\n  - dataset: arith\n", encoding="utf-8")
    api.export(mix, out=tmp_path / "exp", catalog=world["cat"])
    from dataforge.export.manifest import read_export

    val = read_export(tmp_path / "exp").read_split("validation")["correct"].unique().to_list()
    assert len(val) == 1
    logged = []
    cfg = _config(world, tmp_path, data={"export": str(tmp_path / "exp"), "where": {"correct": not val[0]}},
                  train={"max_steps": 2})
    res = api.train(cfg, catalog=world["cat"], log=logged.append)
    assert res.metrics["eval_examples"] == 0 and res.metrics["eval_loss"] is None
    assert any("validation split has no rows that match data.where" in m for m in logged)


def test_malformed_config_is_answered_at_file_line(world, tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(f"""\
        method: sft
        base_model: {world['model']}
        data:
          export: {world['export']}
        output_dir: {tmp_path / 'o'}
        train:
          batch_size: 4
          learning_rate: fast
        """), encoding="utf-8")
    r = cli("train", bad, "--catalog", world["cat"])
    assert r.exit_code == 2
    assert f"{bad}:8:18: train.learning_rate:" in r.output and "Traceback" not in r.output
    bad.write_text("method: nat\ndata: {export: x}\noutput_dir: o\n", encoding="utf-8")
    r = cli("train", bad, "--catalog", world["cat"])
    # A key the method needs is reported at the `method` line, naming the key.
    assert r.exit_code == 2 and f"{bad}:1:9: method: nat needs `negative_data:`" in r.output
    bad.write_text("data: {export: x}\noutput_dir: o\nnegative_data: {export: y}\n", encoding="utf-8")
    r = cli("train", bad, "--catalog", world["cat"])
    assert r.exit_code == 2 and f"{bad}:3:16: negative_data: `negative_data` is for method nat" in r.output
    bad.write_text("# nothing yet\n", encoding="utf-8")
    r = cli("train", bad, "--catalog", world["cat"])
    assert r.exit_code == 2 and f"{bad}:1:1: train config file is empty" in r.output
    bad.write_text("data: {export: x, dataset: y}\noutput_dir: o\nlora: {rank: 4}\n", encoding="utf-8")
    r = cli("train", bad, "--catalog", world["cat"])
    assert r.exit_code == 2 and f"{bad}:1:7: data:" in r.output and f"{bad}:3:14: lora.rank: unknown field" in r.output
    bad.write_text(f"base_model: {world['model']}\ndata:\n  export: {world['export']}\n  where: {{completion: 5}}\n"
                   f"output_dir: {tmp_path / 'o'}\n", encoding="utf-8")
    r = cli("train", bad, "--catalog", world["cat"])
    assert r.exit_code == 2 and f"{bad}:4:23: data.where.completion: cannot compare column 'completion'" in r.output
    # a base model that is not there (it was `error: base_model: no such file ...`, with no file or line)
    bad.write_text(f"base_model: {tmp_path / 'nomodel'}\ndata:\n  export: {world['export']}\n"
                   f"output_dir: {tmp_path / 'o'}\n", encoding="utf-8")
    r = cli("train", bad, "--catalog", world["cat"])
    assert r.exit_code == 2 and f"{bad}:1:13: base_model: no such file or directory: {tmp_path / 'nomodel'}" in r.output


def test_an_empty_output_dir_in_the_config_is_refused_not_read_as_the_configs_folder(world, tmp_path, cli):
    # As `--out ""`: `output_dir: ""` resolved to the config file's folder, and the run was written into it.
    cfg = _config(world, tmp_path, output_dir="", train={"max_steps": 1})
    before = _run_count(world["cat"])
    r = cli("train", cfg, "--catalog", world["cat"])
    assert r.exit_code == 2, r.output
    assert f"{cfg}:" in r.output and "output_dir: output_dir is empty; give a directory for the run" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.yaml"] and _run_count(world["cat"]) == before


def _run_count(cat) -> int:
    return api.sql("select count(*) as n from runs", catalog=cat)["n"][0]


def test_config_errors_found_after_parsing_leave_no_run_and_no_output_dir(world, tmp_path, cli):
    # A target module the model does not have: found once the model is loaded, before the run is recorded.
    before = _run_count(world["cat"])
    cfg = _config(world, tmp_path, lora={"target_modules": ["q_proj", "nope_proj"]})
    r = cli("train", cfg, "--catalog", world["cat"])
    assert r.exit_code == 2, r.output
    assert f"{cfg}:" in r.output and "lora.target_modules[1]: 'nope_proj' names no layer" in r.output
    assert "q_proj, up_proj, v_proj" in r.output  # the layers it could have named
    assert not (tmp_path / "out").exists() and _run_count(world["cat"]) == before
    # A layer that exists but that LoRA cannot wrap (peft's own error names no file or field).
    cfg = _config(world, tmp_path, lora={"target_modules": ["input_layernorm", "q_proj"]})
    r = cli("train", cfg, "--catalog", world["cat"])
    assert r.exit_code == 2, r.output
    assert f"{cfg}:" in r.output and "lora.target_modules[0]: 'input_layernorm' is a" in r.output
    assert "which LoRA does not wrap" in " ".join(r.output.split())
    assert not (tmp_path / "out").exists() and _run_count(world["cat"]) == before
    # An nce teacher that is not a nat run: found before the base model loads.
    sft = api.train(_config(world, tmp_path, "sft.yaml", output_dir=str(tmp_path / "sft"), train={"max_steps": 1}),
                    catalog=world["cat"])
    before = _run_count(world["cat"])
    cfg = _config(world, tmp_path, "nce.yaml", method="nce", nce={"nat_dir": str(sft.output_dir)})
    r = cli("train", cfg, "--catalog", world["cat"])
    assert r.exit_code == 2 and f"{cfg}:" in r.output and "nce.nat_dir:" in r.output and "not a nat run" in r.output
    assert "loading base model" not in r.output
    assert not (tmp_path / "out").exists() and _run_count(world["cat"]) == before


def test_tampered_export_and_missing_extra_exit_2(world, tmp_path, cli, monkeypatch):
    import shutil

    exp = tmp_path / "exp"
    shutil.copytree(world["export"], exp)
    with open(exp / "train.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"prompt": "injected", "completion": " red"}\n')
    cfg = _config(world, tmp_path, data={"export": str(exp)})
    r = cli("train", cfg, "--catalog", world["cat"])
    assert r.exit_code == 2 and "train.jsonl" in r.output and "refusing to read this export" in r.output
    assert not (tmp_path / "out").exists()

    from dataforge.train import deps

    monkeypatch.setattr(deps, "PACKAGES", (*deps.PACKAGES, "no_such_training_package"))
    r = cli("train", cfg, "--catalog", world["cat"])
    assert r.exit_code == 2 and "pip install" in r.output and "no_such_training_package" in r.output


def test_checked_in_train_schema_is_current():
    from dataforge.recipe.schema import schema_json

    assert (REPO / "schemas" / "train.schema.json").read_text(encoding="utf-8") == schema_json("train"), \
        "schemas/train.schema.json is stale: run `dataforge schema`"


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "train").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_train_configs_validate(path):
    from dataforge.train.config import load_config

    cf = load_config(path)
    assert cf.config.output_dir and cf.resolve(cf.config.output_dir).is_relative_to(REPO / "out")


def test_a_target_module_matching_a_layer_and_a_norm_is_refused_as_peft_would():
    from dataforge.train.config import LoraSettings
    from dataforge.train.sft import target_module_problems

    model = torch.nn.ModuleDict({"attn": torch.nn.ModuleDict({"proj": torch.nn.Linear(2, 2)}),
                                 "norm": torch.nn.ModuleDict({"proj": torch.nn.LayerNorm(2)})})
    problems = target_module_problems(model, LoraSettings(target_modules=["proj"]))
    assert problems == [(0, "'proj' is a LayerNorm (at norm.proj), which LoRA does not wrap (it wraps Linear, "
                            "Embedding and Conv layers); linear layers of this model: proj")]
    assert target_module_problems(model, LoraSettings(target_modules=["attn.proj"])) == []
