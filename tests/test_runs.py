"""The `runs` record (migration m006_runs, written only through the catalog) and `dataforge runs`;
the typed export manifest and `read_export`, which refuses tampered or half-written exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from dataforge import api
from dataforge.catalog.store import Catalog
from dataforge.errors import UserError
from dataforge.export.manifest import Manifest, read_export
from dataforge.train.runs import RunRecord

CONFIG = {"method": "sft", "data": {"export": "/tmp/x"}, "train": {"lr": 3e-4, "steps": 3}}


def _run(cat, **kw):
    args = dict(kind="train", method="sft", config=CONFIG, config_path="t.yaml", config_sha256="ab" * 32,
                base_model="bundled", base_model_sha256="cd" * 32,
                data=[{"export": "/tmp/x", "manifest_sha256": "ef" * 32}], device="cpu", seed=3, output_dir="out")
    args.update(kw)
    return RunRecord.start(cat, **args)


def test_a_run_records_config_losses_metrics_and_lists(catalog, cli):
    with _run(catalog) as run:
        for step in range(1, 4):
            run.loss(step=step, loss=3.0 / step, learning_rate=1e-4, tokens=100 * step)
        run.loss(step=3, loss=1.5, split="validation")
        run.metrics["eval_loss"] = 1.5
        run.adapter_path = "out/adapter"
    rec = api.run_record(run.run_id, catalog=catalog)
    assert rec["status"] == "done" and rec["config"] == CONFIG and rec["seed"] == 3
    assert rec["metrics"] == {"eval_loss": 1.5} and rec["adapter_path"] == "out/adapter"
    assert rec["base_model_sha256"] == "cd" * 32 and rec["data"][0]["manifest_sha256"] == "ef" * 32
    assert rec["wall_seconds"] >= 0 and rec["device"] == "cpu"
    train = rec["losses"].filter(rec["losses"]["split"] == "train")
    assert train["step"].to_list() == [1, 2, 3] and train["loss"].to_list() == pytest.approx([3.0, 1.5, 1.0])

    listed = api.runs(catalog=catalog)
    assert listed["run_id"].to_list() == [run.run_id] and listed["last_loss"][0] == pytest.approx(1.0)
    res = cli("runs", "--catalog", catalog, "--format", "json")
    assert res.exit_code == 0 and json.loads(res.output)[0]["run_id"] == run.run_id
    # The config prints as YAML that `dataforge train` takes back (repeat a run from its record).
    res = cli("runs", run.run_id, "--config", "--catalog", catalog)
    assert res.exit_code == 0 and yaml.safe_load(res.output) == CONFIG


def test_failure_and_interrupt_close_the_run_with_status(catalog):
    with pytest.raises(RuntimeError):
        with _run(catalog) as run:
            raise RuntimeError("out of memory")
    assert api.run_record(run.run_id, catalog=catalog)["status"] == "failed"
    assert "out of memory" in api.run_record(run.run_id, catalog=catalog)["error"]
    with pytest.raises(KeyboardInterrupt):
        with _run(catalog) as run2:
            raise KeyboardInterrupt
    assert api.run_record(run2.run_id, catalog=catalog)["status"] == "interrupted"
    # Ctrl-C landing while DuckDB stores loss points arrives as DuckDB's own error: still an interrupt.
    with pytest.raises(RuntimeError):
        with _run(catalog) as run3:
            raise RuntimeError("Query interrupted")
    assert api.run_record(run3.run_id, catalog=catalog)["status"] == "interrupted"


def test_a_killed_runs_row_is_marked_and_resume_drops_later_losses(catalog, tmp_path):
    code = (f"from dataforge.train.runs import RunRecord\n"
            f"r = RunRecord.start({str(catalog)!r}, kind='train', method='sft', config={{}})\n"
            f"[r.loss(step=s, loss=1.0) for s in range(1, 6)]\nr.flush()\nprint(r.run_id)\n"
            f"import os; os._exit(9)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    run_id = proc.stdout.strip()
    assert run_id.startswith("run-"), proc.stderr
    Catalog(catalog).mark_killed_runs()
    assert api.run_record(run_id, catalog=catalog)["status"] == "killed"
    resumed = RunRecord.resume(catalog, run_id, stage="main", step=3)
    resumed.loss(step=4, loss=0.5)
    resumed.close()
    rec = api.run_record(run_id, catalog=catalog)
    assert rec["status"] == "done" and rec["losses"]["step"].to_list() == [1, 2, 3, 4]
    assert rec["losses"]["loss"].to_list() == [1.0, 1.0, 1.0, 0.5]


def test_runs_refuses_an_unknown_format_or_kind(catalog, cli):
    """A bad flag is the user's error (exit 2), not `internal error: ValueError` or an empty list."""
    with _run(catalog):
        pass
    for flag, value in (("--format", "nope"), ("--kind", "nope"), ("--limit", "-1")):
        res = cli("runs", "--catalog", catalog, flag, value)
        assert res.exit_code == 2 and "internal error" not in res.output, res.output
    res = cli("runs", "--catalog", catalog, "--kind", "train", "--format", "jsonl")
    assert res.exit_code == 0 and json.loads(res.output.splitlines()[0])["kind"] == "train"
    assert cli("runs", "--catalog", catalog, "--kind", "eval", "--format", "csv").output.strip().count("\n") == 0


def test_unknown_run_is_a_user_error(catalog, cli):
    _run(catalog).close()
    with pytest.raises(UserError, match="no run 'nope'"):
        api.run_record("nope", catalog=catalog)
    assert cli("runs", "nope", "--catalog", catalog).exit_code == 2


@pytest.fixture
def export_dir(write, tmp_path):
    rows = [{"prompt": f"p{i}", "completion": f" c{i}"} for i in range(12)]
    recipe = write("r.yaml", yaml.safe_dump({"name": "r", "steps": [{"id": "pc", "type": "source.inline", "rows": rows}],
                                             "outputs": {"pc": "pc"}}))
    cat = tmp_path / "c.duckdb"
    api.build(recipe, catalog=cat)
    mix = write("m.yaml", "name: m\nseed: 1\nsplit: {validation_fraction: 0.25}\nsources:\n  - dataset: pc\n")
    out = tmp_path / "exp"
    api.export(mix, out=out, catalog=cat)
    return out


def test_read_export_checks_files_and_reads_splits(export_dir):
    ex = read_export(export_dir)
    assert isinstance(ex.manifest, Manifest) and ex.manifest.manifest_version == 1
    train = ex.read_split("train")
    assert train.height == ex.manifest.rows["train"] and set(train.columns) >= {"prompt", "completion"}
    assert len(ex.manifest_sha256) == 64


def test_an_export_in_a_folder_with_glob_characters_reads_its_own_splits(export_dir, tmp_path):
    """polars reads a path holding `[` as a pattern: `exp[1]/train.jsonl` would read `exp1/`'s."""
    import shutil

    odd = tmp_path / "exp[1]"
    shutil.copytree(export_dir, odd)
    (tmp_path / "exp1").mkdir()
    (tmp_path / "exp1" / "train.jsonl").write_text('{"prompt": "neighbour", "completion": "x"}\n')
    train = read_export(odd).read_split("train")
    assert "neighbour" not in train["prompt"].to_list() and train.height == read_export(odd).manifest.rows["train"]


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: (d / "train.jsonl").write_text((d / "train.jsonl").read_text().replace("p1", "p9")), "sha256 differs"),
    (lambda d: (d / "train.jsonl").write_bytes((d / "train.jsonl").read_bytes()[:-7]), "truncated"),
    (lambda d: (d / "validation.jsonl").unlink(), "missing"),
    (lambda d: (d / "manifest.json").unlink(), "never finished"),
    (lambda d: (d / "extra.jsonl").write_text("{}\n"), "not listed"),
    (lambda d: (d / "manifest.json").write_text(
        json.dumps({**json.loads((d / "manifest.json").read_text()), "manifest_version": 7})), "manifest_version 7"),
])
def test_read_export_refuses_tampered_or_half_written(export_dir, damage, fragment):
    damage(export_dir)
    with pytest.raises(UserError, match=fragment) as e:
        read_export(export_dir)
    assert e.value.file and "refusing" in str(e.value)
