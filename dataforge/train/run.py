"""`dataforge train`: config -> data and base model -> the method -> adapter, `run.json` and a `runs` record.

An output_dir holds one run. A second `dataforge train` into it is refused unless `--resume`, which
continues the run from its last checkpoint (same `runs` record; loss points after the checkpoint are
logged again).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dataforge.catalog.db import is_interrupt
from dataforge.catalog.store import utc_now
from dataforge.errors import UserError
from dataforge.train import deps
from dataforge.train.config import ConfigFile
from dataforge.train.model import RUN_FILE

STAGES = {"sft": ("main",), "nce": ("main",), "nat": ("negative", "positive")}


@dataclass
class TrainResult:
    """A finished run: its id, output_dir, adapter path and metrics."""

    run_id: str
    output_dir: Path
    adapter_path: Path
    metrics: dict[str, Any]


def _check_output_dir(out: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a fresh run); refuse to mix two runs in one directory."""
    from dataforge.train.loop import checkpoint_dirs, load_checkpoint

    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir {out} exists and is not a directory")
    ckpts = checkpoint_dirs(out)
    if resume:
        if (out / RUN_FILE).is_file():
            raise UserError(f"--resume: the run in {out} already finished ({RUN_FILE} is there)")
        if not ckpts:
            raise UserError(f"--resume: {out} has no checkpoint to resume from (set train.checkpoint_every); "
                            "run again without --resume to start over")
        return load_checkpoint(ckpts[-1])
    if (out / RUN_FILE).is_file() or ckpts:
        what = "a finished run" if (out / RUN_FILE).is_file() else "checkpoints of an unfinished run"
        raise UserError(f"output_dir {out} already holds {what}; pass --resume to continue an unfinished run, "
                        "or choose another output_dir")
    return None


def _check_same_data(expect: list[dict[str, Any]], got: list[dict[str, Any]], run_id: str | None,
                     what: str = "repeat") -> None:
    """A repeated (or resumed) run must read exactly what the recorded one read (a record written before
    `rows_sha256` existed is held to the rest)."""
    keys = ("export", "split", "manifest_sha256", "dataset", "version", "fingerprint", "rows", "rows_sha256")
    want = {o["role"]: {k: o.get(k) for k in keys if k in o or k != "rows_sha256"} for o in expect}
    for o in got:
        before = want.get(o["role"])
        if before is None:
            continue
        now = {k: o.get(k) for k in before}
        if before != now:
            diff = ", ".join(f"{k} {before[k]!r} -> {now[k]!r}" if k != "rows_sha256" else "the rows' content"
                             for k in before if before[k] != now[k])
            raise UserError(f"cannot {what} run {run_id}: its {o['role']} data changed ({diff})")


def run_training(cf: ConfigFile, *, catalog: Path, resume: bool = False, repeat_of: str | None = None,
                 expect_data: list[dict[str, Any]] | None = None,
                 log: Callable[[str], None] = print) -> TrainResult:
    """Run the config's method end to end and record it in the catalog's `runs`.

    `expect_data` (repeating a run): the recorded run's data origins; different data is refused."""
    deps.require()
    import torch

    from dataforge.train import data as D
    from dataforge.train.model import load_base, pick_device, resolve_base
    from dataforge.train.runs import RunRecord

    cfg = cf.config
    out = cf.resolve(cfg.output_dir)
    state = _check_output_dir(out, resume)
    resolved = cf.resolved()
    try:
        base = resolve_base(resolved["base_model"])
    except UserError as e:
        raise cf.error(e.message.removeprefix("base_model: "), ("base_model",)) from None
    if cfg.method == "nce":  # the teacher is checked before anything loads or is recorded
        from dataforge.train.nce import check_teacher

        check_teacher(cf, base.sha256)
    device = pick_device()

    train_rows = D.read_source(cfg.data, cf, ("data",), catalog)
    origins = [{"role": "train", **train_rows.origin}]
    neg_rows = None
    if cfg.negative_data is not None:
        neg_rows = D.read_source(cfg.negative_data, cf, ("negative_data",), catalog)
        origins.append({"role": "negative", **neg_rows.origin})
    eval_rows = None
    if cfg.eval_data is not None:
        eval_rows = D.read_source(cfg.eval_data, cf, ("eval_data",), catalog)
    elif cfg.data.export is not None:
        from dataforge.export.manifest import read_export

        if "validation" in read_export(cf.resolve(cfg.data.export)).manifest.rows:
            eval_rows = D.read_source(cfg.data.model_copy(update={"split": "validation", "max_rows": None,
                                                                  "where": cfg.data.where}), cf, ("data",), catalog,
                                      allow_empty=True)
            if not eval_rows.rows:  # the default eval rows are optional: none left after `where` means no eval
                log("  no eval loss: the export's validation split has no rows"
                    + (" that match data.where" if cfg.data.where else ""))
                eval_rows = None
    if eval_rows is not None:
        origins.append({"role": "eval", **eval_rows.origin})
    if expect_data is not None:
        _check_same_data(expect_data, origins, repeat_of)
    for key, o in (("data", train_rows.origin), ("negative_data", neg_rows.origin if neg_rows else None),
                   ("eval_data", eval_rows.origin if eval_rows and cfg.eval_data else None)):
        if o is not None and "version" in o:
            resolved[key]["version"] = o["version"]  # a repeat reads this version, not a later one

    log(f"loading base model {base.spec} ({base.kind}, sha256 {base.sha256[:12]}...) on {device}")
    t0 = time.perf_counter()
    started = utc_now()  # the run's record counts from here: reading data and loading models are part of it
    model, tok = load_base(base, device)
    log(f"  loaded in {time.perf_counter() - t0:.1f}s")
    ts = cfg.train

    def enc(rows):
        return D.encode_all(rows.rows, tok, completion_only=ts.completion_only, max_length=ts.max_length)

    examples, dropped = enc(train_rows)
    eval_examples = enc(eval_rows)[0] if eval_rows is not None else []
    if dropped:
        log(f"  {dropped:,} training rows dropped: their completion alone is over max_length {ts.max_length}")
    neg_examples, neg_dropped = enc(neg_rows) if neg_rows is not None else ([], 0)
    _check_before_start(cf, model, examples, neg_rows is not None and not neg_examples)

    if state is not None:
        stages = STAGES[cfg.method]
        later = stages[stages.index(state["stage"]) + 1:] if state["stage"] in stages else ()
        record = RunRecord.resume(catalog, state["run_id"], stage=state["stage"], step=state["step"],
                                  later_stages=later)
        stored = _stored_run(catalog, state["run_id"])
        if stored is not None and stored["config"] != json.loads(json.dumps(resolved, sort_keys=True, default=str)):
            record.close("killed", "resume refused: the config differs from the one the run started with")
            raise UserError(f"--resume: the config differs from the one run {state['run_id']} started with; "
                            f"repeat it with `dataforge runs {state['run_id']} --config`")
        if stored is not None:  # the checkpoint's batches index the rows the run started on
            try:
                _check_same_data(stored["data"] or [], origins, state["run_id"], "resume")
            except UserError as e:
                record.close("killed", "resume refused: its data changed")
                raise UserError(f"--resume: {e.message}; train it again in a new output_dir") from None
        log(f"resuming run {record.run_id} from {state['stage']} step {state['step']}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        record = RunRecord.start(catalog, kind="train", method=cfg.method, config=resolved,
                                 config_path=str(cf.path) if cf.path else None, config_sha256=cf.sha256,
                                 base_model=base.spec if base.spec == "bundled" else str(base.path),
                                 base_model_sha256=base.sha256, data=origins, device=str(device), seed=ts.seed,
                                 output_dir=str(out), repeat_of=repeat_of, started_at=started)
        log(f"run {record.run_id}: method {cfg.method}, output {out}")
    pad_id = tok.pad_token_id
    torch.manual_seed(ts.seed)
    with record, _noted_interrupt(cf, out, repeat_of):
        metrics: dict[str, Any] = {"examples": len(examples), "dropped_for_length": dropped,
                                   "eval_examples": len(eval_examples)}
        if cfg.method == "sft":
            from dataforge.train.sft import train_sft

            record.stage = "main"
            _, res = train_sft(model, examples=examples, eval_examples=eval_examples, lora=cfg.lora, ts=ts,
                               pad_id=pad_id, device=device, record=record, output_dir=out,
                               adapter_dir=out / "adapter", resume=state, log=log)
            metrics.update(res.metrics())
            adapter = out / "adapter"
        elif cfg.method == "nat":
            from dataforge.train.nat import train_nat

            metrics.update({"negative_examples": len(neg_examples), "negative_dropped_for_length": neg_dropped})
            metrics.update(train_nat(model, cfg=cfg, examples=examples, negative_examples=neg_examples,
                                     eval_examples=eval_examples, pad_id=pad_id, device=device, record=record,
                                     output_dir=out, state=state, log=log))
            adapter = out
        else:
            from dataforge.train.nce import train_nce

            metrics.update(train_nce(model, cfg=cfg, cf=cf, base_sha256=base.sha256, examples=examples,
                                     eval_examples=eval_examples, pad_id=pad_id, device=device, record=record,
                                     output_dir=out, state=state, log=log))
            adapter = out / "adapter"
        tok.save_pretrained(str(out / "tokenizer"))
        record.metrics.update(metrics)
        record.adapter_path = str(adapter)
        info = {"run_id": record.run_id, "method": cfg.method, "base_model": resolved["base_model"],
                "base_model_sha256": base.sha256, "adapter": str(adapter), "metrics": metrics, "config": resolved}
        (out / RUN_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"run {record.run_id} done: adapter in {adapter}")
    return TrainResult(record.run_id, out, adapter, metrics)


@contextlib.contextmanager
def _noted_interrupt(cf: ConfigFile, out: Path, repeat_of: str | None):
    """On Ctrl-C, note on the interrupt what the run kept and how to go on (the CLI prints it)."""
    try:
        yield
    except BaseException as e:
        if is_interrupt(e):
            e.add_note(_interrupt_note(cf, out, repeat_of))
        raise


def _interrupt_note(cf: ConfigFile, out: Path, repeat_of: str | None) -> str:
    """What an interrupted run kept, and the command that continues it (or starts it over)."""
    from dataforge.train.loop import CHECKPOINTS, checkpoint_dirs

    if cf.path is not None:
        again = f"dataforge train {shlex.quote(str(cf.path))}"
    else:
        again = f"dataforge train --repeat {repeat_of} --out {shlex.quote(str(out))}"
    ckpts = checkpoint_dirs(out)
    if ckpts:
        return (f"completed checkpoints are kept in {out / CHECKPOINTS} (the last: {ckpts[-1].name}); "
                f"`{again} --resume` continues from there")
    every = cf.config.train.checkpoint_every
    why = (f"the first comes at step {every}" if every else "train.checkpoint_every is not set")
    return f"no checkpoint was written yet ({why}); `{again}` starts the run over"


def _check_before_start(cf: ConfigFile, model, examples: list, no_negatives: bool) -> None:
    """What needs the loaded model or the encoded rows, checked before the run is recorded and output_dir made."""
    from dataforge.errors import RecipeErrors
    from dataforge.train.sft import target_module_problems

    problems = target_module_problems(model, cf.config.lora)
    if problems:
        raise RecipeErrors([cf.error(msg, ("lora", "target_modules", i)) for i, msg in problems])
    if not examples:
        raise cf.error("no training example fits in max_length tokens; raise train.max_length", ("train", "max_length"))
    if no_negatives:
        raise cf.error("no negative example fits in train.max_length tokens; raise it", ("negative_data",))


def _stored_run(catalog: Path, run_id: str) -> dict[str, Any] | None:
    from dataforge.catalog import query as q

    try:
        return q.run_record(catalog, run_id)
    except UserError:
        return None
