"""LoRA supervised fine-tuning (`method: sft`): peft adapters on the target modules, the shared loop,
the adapter saved in peft's format (`PeftModel.from_pretrained(base, DIR)` loads it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from dataforge.train.config import LoraSettings, TrainSettings
from dataforge.train.deps import quiet_peft
from dataforge.train.data import Batch, Batches, Example, eval_batches
from dataforge.train.loop import LoopResult, token_loss_sum, total_steps, train_loop
from dataforge.train.runs import RunRecord


def lora_config(lora: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), task_type="CAUSAL_LM", bias="none")


def linear_layer_names(model) -> list[str]:
    """Short names of the model's linear layers (what `lora.target_modules` usually lists)."""
    import torch

    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def target_module_problems(model, lora: LoraSettings) -> list[tuple[int, str]]:
    """(index, message) for each `lora.target_modules` entry that names no layer of `model`, matched as peft
    matches a list (a module name equal to the entry or ending in `.entry`), or names a module LoRA cannot
    wrap (a block of layers, a norm): peft refuses the whole list for any one such match."""
    modules = [(n, m) for n, m in model.named_modules() if n]
    problems = []
    for i, target in enumerate(lora.target_modules):
        hits = [(n, m) for n, m in modules if n == target or n.endswith("." + target)]
        bad = next(((n, m) for n, m in hits if not _lora_wraps(m)), None)
        if not hits:
            problems.append((i, f"{target!r} names no layer of this model"))
        elif bad is not None:
            name, m = bad
            what = "a block of layers, not a layer" if next(m.children(), None) is not None else \
                "which LoRA does not wrap (it wraps Linear, Embedding and Conv layers)"
            at = "" if name == target or len(hits) == 1 else f" (at {name})"
            problems.append((i, f"{target!r} is a {type(m).__name__}{at}, {what}"))
    if problems:
        names = ", ".join(linear_layer_names(model))
        problems = [(i, f"{msg}; linear layers of this model: {names}") for i, msg in problems]
    return problems


def _lora_wraps(module) -> bool:
    """Whether peft's LoRA can wrap this layer (its own check raises a bare ValueError mid-way)."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    return isinstance(module, kinds) or type(module).__name__ == "Conv1D"  # transformers' GPT-2 layer


def add_lora(model, lora: LoraSettings, seed: int, adapter_name: str = "default"):
    """Wrap `model` in a peft model with a fresh LoRA adapter (initialised from `seed`)."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)
    try:
        with quiet_peft():
            return get_peft_model(model, lora_config(lora), adapter_name=adapter_name)
    except ValueError as e:  # e.g. target modules not found in the base model
        from dataforge.errors import UserError

        raise UserError(f"lora.target_modules: {e}; linear layers of this model: "
                        f"{', '.join(linear_layer_names(model))}") from None


def lm_loss(model) -> Callable[[Batch], Any]:
    """Summed next-token loss of a micro-batch (normalised by the loop)."""

    def fn(batch: Batch):
        out = model(**batch.model_inputs())
        return token_loss_sum(out.logits, batch.labels)

    return fn


def eval_loss_fn(model, examples: list[Example], batch_size: int, pad_id: int, device) -> Callable[[], float] | None:
    """Mean per-token loss over `examples` (None when there are none)."""
    if not examples:
        return None
    batches = eval_batches(examples, batch_size, pad_id)

    def fn() -> float:
        total, n = 0.0, 0
        for b in batches:
            b = b.to(device)
            total += float(token_loss_sum(model(**b.model_inputs()).logits, b.labels))
            n += int((b.labels[:, 1:] != -100).sum())
        return total / max(n, 1)

    return fn


def train_sft(model, *, examples: list[Example], eval_examples: list[Example], lora: LoraSettings,
              ts: TrainSettings, pad_id: int, device, record: RunRecord, output_dir: Path, adapter_dir: Path,
              stage: str = "main", steps: int | None = None, resume: dict[str, Any] | None = None,
              log: Callable[[str], None] = print):
    """Train a LoRA adapter on `examples`; save it to `adapter_dir`. Returns (peft model, LoopResult)."""
    peft_model = add_lora(model, lora, ts.seed)
    batches = Batches(examples, batch_size=ts.batch_size, seed=ts.seed, packing=ts.packing,
                      max_length=ts.max_length, pad_id=pad_id)
    n = total_steps(ts, batches, steps)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    log(f"{stage}: {len(examples):,} examples, {batches.per_epoch:,} micro-batches per epoch, {n} steps, "
        f"{trainable:,} trainable parameters, device {device}")
    result: LoopResult = train_loop(
        model=peft_model, loss_fn=lm_loss(peft_model), batches=batches, ts=ts, steps=n, device=device,
        record=record, output_dir=output_dir, stage=stage, log=log, resume=resume,
        eval_fn=eval_loss_fn(peft_model, eval_examples, ts.batch_size, pad_id, device))
    peft_model.save_pretrained(str(adapter_dir))
    return peft_model, result
