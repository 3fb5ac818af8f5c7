"""The optimizer loop every method shares: AdamW on the trainable parameters, warmup then cosine or
linear decay (transformers' schedulers), gradient accumulation and clipping, progress with tokens/s,
eval loss, and checkpoints that a killed run resumes from with the same loss curve.

A checkpoint holds the trainable parameters, optimizer and scheduler state, the RNG states and the
counters; batches are addressed by index (`Batches.at`), so after a resume the run sees the same
batches, dropout masks and learning rates as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dataforge.train.config import TrainSettings
from dataforge.train.data import IGNORE, Batch, Batches
from dataforge.train.runs import RunRecord

CHECKPOINTS = "checkpoints"


def label_count(batch: Batch) -> int:
    """Tokens whose next-token loss counts (labels after the shift)."""
    return int((batch.labels[:, 1:] != IGNORE).sum())


def token_loss_sum(logits, labels):
    """Sum of next-token cross-entropy over labelled positions (float32)."""
    import torch.nn.functional as F

    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


@dataclass
class LoopResult:
    steps: int
    last_loss: float | None
    eval_loss: float | None
    tokens: int
    label_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def label_tokens_per_s(self) -> float:
        return self.label_tokens / self.seconds if self.seconds else 0.0

    def metrics(self, prefix: str = "") -> dict[str, Any]:
        """What a `runs` record keeps of a loop (keys prefixed, e.g. `negative_` for NAT's stage 1)."""
        return {f"{prefix}train_loss": self.last_loss, f"{prefix}eval_loss": self.eval_loss,
                f"{prefix}steps": self.steps, f"{prefix}tokens": self.tokens,
                f"{prefix}train_seconds": round(self.seconds, 2), f"{prefix}tokens_per_s": round(self.tokens_per_s, 1),
                f"{prefix}label_tokens_per_s": round(self.label_tokens_per_s, 1)}


def total_steps(ts: TrainSettings, batches: Batches, override: int | None = None) -> int:
    if override is not None:
        return override
    if ts.max_steps is not None:
        return ts.max_steps
    return max(1, math.ceil(ts.epochs * batches.per_epoch / ts.grad_accum))


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np
    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(output_dir: Path, stage: str | None = None) -> list[Path]:
    """Complete checkpoints under `output_dir`, oldest first (optionally of one stage)."""
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and (p / "state.pt").is_file() and not p.name.startswith(".")]
    if stage is not None:
        found = [p for p in found if p.name.rsplit("-step-", 1)[0] == stage]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path / "state.pt", map_location="cpu", weights_only=False)


def save_checkpoint(output_dir: Path, stage: str, state: dict[str, Any], keep: int) -> Path:
    """Write a checkpoint atomically (a temp dir renamed into place) and drop the oldest beyond `keep`."""
    import torch

    root = output_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{stage}-step-{state['step']:06d}"
    tmp = root / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(output_dir, stage)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def train_loop(*, model, loss_fn: Callable[[Batch], Any], batches: Batches, ts: TrainSettings, steps: int,
               device, record: RunRecord, output_dir: Path, stage: str,
               eval_fn: Callable[[], float] | None = None, count_fn: Callable[[Batch], int] = label_count,
               log: Callable[[str], None] = print, resume: dict[str, Any] | None = None,
               carry: dict[str, Any] | None = None) -> LoopResult:
    """Run `steps` optimizer steps of `loss_fn` (returns the summed loss of a micro-batch; the step's loss is
    the sum over its micro-batches divided by the sum of `count_fn` over them). `carry` is stored in each
    checkpoint as is (e.g. the metrics of an earlier stage, which a resumed run no longer computes)."""
    import torch
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    named = [n for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ts.learning_rate, weight_decay=ts.weight_decay)
    sched = get_scheduler({"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[ts.schedule],
                          opt, num_warmup_steps=round(ts.warmup_ratio * steps), num_training_steps=steps)
    step, tokens, label_tokens, seconds = 0, 0, 0, 0.0
    if resume is not None:
        trainable = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in resume["params"].items():
                trainable[n].copy_(t.to(trainable[n].device))
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        _set_rng_state(resume["rng"])
        step, tokens, label_tokens, seconds = resume["step"], resume["tokens"], resume["label_tokens"], resume["seconds"]
        log(f"{stage}: resumed from step {step} of {steps}")
    model.train()
    last = None
    eval_loss = None
    t_start = time.perf_counter() - seconds
    window_tokens, window_t = 0, time.perf_counter()
    while step < steps:
        micro = [batches.at(step * ts.grad_accum + k) for k in range(ts.grad_accum)]
        denom = max(1, sum(count_fn(b) for b in micro))
        total = 0.0
        for b in micro:
            b = b.to(device)
            loss = loss_fn(b) / denom
            loss.backward()
            total += float(loss.detach())
            tokens += b.real_tokens
            label_tokens += label_count(b)
            window_tokens += b.real_tokens
        if ts.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, ts.max_grad_norm)
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        last = total
        record.loss(step=step, loss=total, learning_rate=lr, tokens=tokens)
        if step % ts.log_every == 0 or step == steps:
            now = time.perf_counter()
            rate = window_tokens / max(now - window_t, 1e-9)
            log(f"{stage} step {step}/{steps}  loss {total:.4f}  lr {lr:.2e}  {rate:,.0f} tok/s")
            window_tokens, window_t = 0, now
        if eval_fn is not None and ts.eval_every and step % ts.eval_every == 0 and step < steps:
            eval_loss = _eval(model, eval_fn, record, step, log, stage)
        if ts.checkpoint_every and step % ts.checkpoint_every == 0 and step < steps:
            record.flush()
            save_checkpoint(output_dir, stage, {
                "run_id": record.run_id, "stage": stage, "step": step, "tokens": tokens,
                "label_tokens": label_tokens, "seconds": time.perf_counter() - t_start,
                "params": {n: p.detach().cpu().clone() for n, p in zip(named, params)},
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
                "carry": carry or {},
            }, ts.keep_checkpoints)
    if eval_fn is not None:
        eval_loss = _eval(model, eval_fn, record, step, log, stage)
    record.flush()
    return LoopResult(step, last, eval_loss, tokens, label_tokens, time.perf_counter() - t_start)


def _eval(model, eval_fn, record: RunRecord, step: int, log, stage: str) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        loss = float(eval_fn())
    model.train()
    record.loss(step=step, loss=loss, split="validation")
    log(f"{stage} step {step}  eval loss {loss:.4f}")
    return loss
