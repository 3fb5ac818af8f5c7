"""Negative Calibrated Enhancement (`method: nce`): a fresh student LoRA trained on the positives and
distilled from a NAT model, weighted per sample by how much the NAT model's negative mode disagrees
with its mixed mode on that sample.

For sample i over its completion tokens t (P_pos: NAT mixed mode, P_neg: NAT negative mode):

    beta_i = tanh(mean_t KL(P_neg || P_pos))
    KD_i   = T^2 * mean_t CE(softmax(z_pos / T), log_softmax(z_student / T))
    loss_i = 0.5 * CE_i + 0.5 * (0.5 + beta_i) * KD_i

where CE_i is the student's mean next-token cross-entropy on the sample; a batch's loss is the mean
of loss_i over its samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dataforge.train.data import IGNORE


@dataclass
class NceTerms:
    """Per-sample terms of the NCE loss (tensors of shape (batch,))."""

    loss: torch.Tensor
    beta: torch.Tensor
    ce: torch.Tensor
    kd: torch.Tensor


def nce_terms(student_logits, pos_logits, neg_logits, labels, temperature: float = 1.0) -> NceTerms:
    """NCE terms from (batch, length, vocab) logits and (batch, length) labels (-100: no loss)."""
    s = student_logits[:, :-1].float()
    zp = pos_logits[:, :-1].float()
    zn = neg_logits[:, :-1].float()
    target = labels[:, 1:]
    mask = (target != IGNORE).float()
    n = mask.sum(-1).clamp(min=1)

    logp_pos = F.log_softmax(zp, -1)
    logp_neg = F.log_softmax(zn, -1)
    kl = (logp_neg.exp() * (logp_neg - logp_pos)).sum(-1)  # KL(P_neg || P_pos) per token
    beta = torch.tanh((kl * mask).sum(-1) / n)

    ce_tok = F.cross_entropy(s.transpose(1, 2), target.clamp(min=0), reduction="none")
    ce = (ce_tok * mask).sum(-1) / n

    t = temperature
    kd_tok = -(F.softmax(zp / t, -1) * F.log_softmax(s / t, -1)).sum(-1)
    kd = (kd_tok * mask).sum(-1) / n * t * t

    loss = 0.5 * ce + 0.5 * (0.5 + beta) * kd
    return NceTerms(loss, beta, ce, kd)


def nce_loss_fn(student, teacher, temperature: float):
    """Summed per-sample NCE loss of a micro-batch (the loop divides by the number of samples)."""

    def fn(batch):
        inputs = batch.model_inputs()
        with torch.no_grad():
            teacher.set_mode("mixed")
            pos = teacher(**inputs).logits
            teacher.set_mode("negative")
            neg = teacher(**inputs).logits
            teacher.set_mode("mixed")
        terms = nce_terms(student(**inputs).logits, pos, neg, batch.labels, temperature)
        has_labels = (batch.labels[:, 1:] != IGNORE).any(-1)
        fn.last_beta = terms.beta[has_labels].tolist()
        return terms.loss.sum()

    fn.last_beta = []
    return fn


def sample_count(batch) -> int:
    """Samples of a micro-batch that carry a label (what the NCE loss averages over)."""
    return int(((batch.labels[:, 1:] != IGNORE).sum(-1) > 0).sum())


def check_teacher(cf, base_sha256: str):
    """`nce.nat_dir`, checked to hold a finished nat run on the same base model (the student shares its base
    and tokenizer); a located `UserError` otherwise. Cheap: run it before the run starts."""
    from dataforge.errors import UserError
    from dataforge.train.model import read_run_file
    from dataforge.train.nat import missing_part

    nat_dir = cf.resolve(cf.config.nce.nat_dir)
    try:
        info = read_run_file(nat_dir)
    except UserError as e:
        raise cf.error(e.message, ("nce", "nat_dir")) from None
    if info.get("method") != "nat":
        raise cf.error(f"{nat_dir} holds a {info.get('method')} run, not a nat run", ("nce", "nat_dir"))
    missing = missing_part(nat_dir)
    if missing is not None:
        raise cf.error(f"{nat_dir} lacks {missing}: not the output_dir of a finished nat run", ("nce", "nat_dir"))
    if info.get("base_model_sha256") != base_sha256:
        raise cf.error(f"the NAT model in {nat_dir} was trained on another base model ({info.get('base_model')}); "
                       "the student must share its base (and tokenizer)", ("base_model",))
    return nat_dir


def train_nce(model, *, cfg, cf, base_sha256: str, examples, eval_examples, pad_id: int, device, record,
              output_dir, state, log) -> dict:
    """Distil a fresh LoRA on `model` from the NAT model in `cfg.nce.nat_dir`; save it to output_dir/adapter."""
    import copy

    from dataforge.train.data import Batches
    from dataforge.train.loop import total_steps, train_loop
    from dataforge.train.nat import NATModel
    from dataforge.train.sft import add_lora, eval_loss_fn

    ts = cfg.train
    nat_dir = check_teacher(cf, base_sha256)
    teacher = NATModel.load(copy.deepcopy(model), nat_dir)
    teacher.eval()
    student = add_lora(model, cfg.lora, ts.seed)
    batches = Batches(examples, batch_size=ts.batch_size, seed=ts.seed, packing=False, max_length=ts.max_length,
                      pad_id=pad_id)
    steps = total_steps(ts, batches)
    betas: list[float] = []
    base_fn = nce_loss_fn(student, teacher, cfg.nce.temperature)

    def loss_fn(batch):
        loss = base_fn(batch)
        betas.extend(base_fn.last_beta)
        return loss

    log(f"nce: {len(examples):,} examples, {steps} steps, teacher {nat_dir} (T = {cfg.nce.temperature})")
    res = train_loop(model=student, loss_fn=loss_fn, batches=batches, ts=ts, steps=steps, device=device,
                     record=record, output_dir=output_dir, stage="main", log=log, resume=state,
                     count_fn=sample_count, eval_fn=eval_loss_fn(student, eval_examples, ts.batch_size, pad_id, device))
    student.save_pretrained(str(output_dir / "adapter"))
    return {**res.metrics(), "mean_beta": sum(betas) / len(betas) if betas else None, "teacher": str(nat_dir)}
