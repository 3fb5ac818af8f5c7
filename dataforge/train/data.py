"""Rows -> token ids and labels; batches with padding or packing.

An `Example` is one row's `input_ids` and `labels` (label -100: no loss). With `completion_only`
the prompt's tokens are -100, so only the completion is learnt. `messages` rows are rendered by
the tokenizer's chat template; the prompt is everything up to the assistant's reply (the template
rendered with a generation prompt), so its tokens are exactly a prefix of the whole.

Packing concatenates examples into rows of `max_length` tokens. Each example's position ids start
at 0 again and the attention mask is block-diagonal causal (a 4-D mask), so a packed example's
logits are those it has alone; the first token of each example gets no label (it would otherwise
be predicted from the previous example's last token).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from dataforge.errors import UserError
from dataforge.train.config import ConfigFile, DataSource

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for t in self.labels[1:] if t != IGNORE)


@dataclass
class LoadedRows:
    """Rows of one `DataSource` and what the run record says about where they came from."""

    rows: list[dict[str, Any]]
    origin: dict[str, Any]


def read_source(src: DataSource, cf: ConfigFile, key: tuple, catalog: Path | None,
                allow_empty: bool = False) -> LoadedRows:
    """Read a data source's rows (an export, checked against its manifest, or a catalog dataset).
    No rows left (after `where` and `max_rows`) is an error unless `allow_empty`."""
    if src.export is not None:
        from dataforge.export.manifest import read_export

        ex = read_export(cf.resolve(src.export))
        if src.split not in ex.manifest.rows:
            raise cf.error(f"export {ex.path} has no {src.split!r} split (it has: {', '.join(ex.splits)})",
                           key + ("split",))
        df = ex.read_split(src.split)
        origin = {"export": str(ex.path), "split": src.split, "manifest_sha256": ex.manifest_sha256,
                  "mixture": ex.manifest.mixture.name}
    else:
        from dataforge.catalog import query as q

        try:
            rec = q.dataset_record(catalog, src.dataset, src.version)
            df = q.read_dataset(catalog, src.dataset, rec["version"])
        except UserError as e:
            raise cf.error(e.message, key + ("dataset",)) from None
        origin = {"dataset": src.dataset, "version": rec["version"], "fingerprint": rec["fingerprint"]}
    for col, value in src.where.items():
        if col not in df.columns:
            raise cf.error(f"no column {col!r} to filter on; the rows have: {', '.join(df.columns)}",
                           key + ("where", col))
        try:
            df = df.filter(pl.col(col) == value)
        except pl.exceptions.PolarsError as e:  # e.g. a number compared with a string column
            raise cf.error(f"cannot compare column {col!r} ({df.schema[col]}) with {value!r}: "
                           f"{str(e).splitlines()[0]}", key + ("where", col)) from None
    if src.max_rows is not None:
        df = df.head(src.max_rows)
    if "completion" not in df.columns and "target" in df.columns:
        df = df.rename({"target": "completion"})
    fmt = src.format if src.format != "auto" else ("messages" if "messages" in df.columns else "prompt_completion")
    need = ["messages"] if fmt == "messages" else ["prompt", "completion"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise cf.error(f"rows lack column(s) {', '.join(missing)} (format {fmt}); they have: {', '.join(df.columns)}",
                       key)
    if df.height == 0 and not allow_empty:
        raise cf.error("no rows to train on (after `where` and `max_rows`)", key)
    rows = [{"format": fmt, **({"messages": r["messages"]} if fmt == "messages" else
                               {"prompt": r["prompt"], "completion": r["completion"]})}
            for r in df.select(need).iter_rows(named=True)]
    origin["rows"] = len(rows)
    origin["rows_sha256"] = _rows_sha256(rows)
    return LoadedRows(rows, origin)


def _rows_sha256(rows: list[dict[str, Any]]) -> str:
    """A digest of the rows a run trains on, in order: a dataset stored again under its fingerprint
    (`build --force`, `--retry-failed`) can hold other rows than the run read."""
    import hashlib

    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode(row: dict[str, Any], tokenizer, *, completion_only: bool, max_length: int) -> Example | None:
    """One row as an `Example` (None when even its completion does not fit in `max_length`)."""
    if row["format"] == "messages":
        msgs = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if not msgs or msgs[-1]["role"] != "assistant":
            raise UserError("a `messages` row must end with the assistant's message")
        prompt = list(tokenizer.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=True,
                                                    return_dict=False))
        full = list(tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=False))
        if full[: len(prompt)] != prompt:
            raise UserError("the tokenizer's chat template does not render the prompt as a prefix of the whole "
                            "conversation; use format: prompt_completion")
        completion = full[len(prompt):]
    else:
        bos = [tokenizer.bos_token_id] if getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None else []
        prompt = bos + _ids(tokenizer, row["prompt"])
        completion = _ids(tokenizer, row["completion"]) + [tokenizer.eos_token_id]
    if len(completion) >= max_length:
        return None
    prompt = prompt[-(max_length - len(completion)):] if len(prompt) + len(completion) > max_length else prompt
    ids = prompt + completion
    labels = ([IGNORE] * len(prompt) if completion_only else list(prompt)) + list(completion)
    return Example(ids, labels)


def encode_all(rows: Sequence[dict[str, Any]], tokenizer, *, completion_only: bool,
               max_length: int) -> tuple[list[Example], int]:
    """Every row that fits, and how many were dropped for length."""
    out, dropped = [], 0
    for r in rows:
        ex = encode(r, tokenizer, completion_only=completion_only, max_length=max_length)
        if ex is None:
            dropped += 1
        else:
            out.append(ex)
    return out, dropped


@dataclass
class Batch:
    """Tensors for one forward pass. `attention_mask` is 2-D (padding) or 4-D (packing, additive)."""

    input_ids: Any
    labels: Any
    attention_mask: Any
    position_ids: Any
    real_tokens: int  # tokens that are not padding

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.labels.to(device), self.attention_mask.to(device),
                     self.position_ids.to(device), self.real_tokens)

    def model_inputs(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "position_ids": self.position_ids}


def pad_batch(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-padded batch of single examples."""
    import torch

    n = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e.input_ids)
        ids[i, :k] = torch.tensor(e.input_ids)
        labels[i, :k] = torch.tensor(e.labels)
        mask[i, :k] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(ids, labels, mask, pos, int(mask.sum()))


def pack(examples: Sequence[Example], max_length: int) -> list[list[Example]]:
    """Greedy first-fit (in the given order) of examples into bins of at most `max_length` tokens."""
    bins: list[list[Example]] = []
    room: list[int] = []
    for e in examples:
        k = len(e.input_ids)
        for i, r in enumerate(room):
            if k <= r:
                bins[i].append(e)
                room[i] -= k
                break
        else:
            bins.append([e])
            room.append(max_length - k)
    return bins


def packed_batch(bins: Sequence[Sequence[Example]], pad_id: int, dtype=None) -> Batch:
    """A batch of packed rows: position ids restart per example, a block-diagonal causal 4-D mask."""
    import torch

    dtype = dtype or torch.float32
    n = max(sum(len(e.input_ids) for e in b) for b in bins)
    ids = torch.full((len(bins), n), pad_id, dtype=torch.long)
    labels = torch.full((len(bins), n), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(bins), n), dtype=torch.long)
    seg = torch.full((len(bins), n), -1, dtype=torch.long)  # example index within the row; -1 padding
    for i, b in enumerate(bins):
        at = 0
        for j, e in enumerate(b):
            k = len(e.input_ids)
            ids[i, at:at + k] = torch.tensor(e.input_ids)
            lab = torch.tensor(e.labels)
            lab[0] = IGNORE  # never predicted from the previous example
            labels[i, at:at + k] = lab
            pos[i, at:at + k] = torch.arange(k)
            seg[i, at:at + k] = j
            at += k
    same = seg[:, :, None] == seg[:, None, :]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    allowed = same & causal & (seg[:, :, None] >= 0)
    allowed |= torch.eye(n, dtype=torch.bool)  # padding rows attend to themselves (no NaN)
    mask = torch.zeros((len(bins), 1, n, n), dtype=dtype)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return Batch(ids, labels, mask, pos, int((seg >= 0).sum()))


class Batches:
    """Deterministic micro-batches: the examples (or, packing, the packed rows made once from a seeded
    shuffle) in a seeded order per epoch. `at(i)` is micro-batch i of the run, so a resumed run continues
    with exactly the batches the interrupted one would have seen."""

    def __init__(self, examples: list[Example], *, batch_size: int, seed: int, packing: bool, max_length: int,
                 pad_id: int):
        if not examples:
            raise UserError("no training example fits in max_length tokens; raise train.max_length")
        self.batch_size = batch_size
        self.seed = seed
        self.packing = packing
        self.pad_id = pad_id
        if packing:
            order = list(range(len(examples)))
            random.Random(seed).shuffle(order)
            self.units: list = pack([examples[i] for i in order], max_length)
        else:
            self.units = list(examples)
        self.per_epoch = -(-len(self.units) // batch_size)
        self._order: tuple[int, list[int]] | None = None

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._order is None or self._order[0] != epoch:
            order = list(range(len(self.units)))
            random.Random(self.seed * 1_000_003 + epoch + 1).shuffle(order)
            self._order = (epoch, order)
        return self._order[1]

    def at(self, i: int) -> Batch:
        epoch, j = divmod(i, self.per_epoch)
        order = self._epoch_order(epoch)
        chunk = [self.units[k] for k in order[j * self.batch_size:(j + 1) * self.batch_size]]
        return packed_batch(chunk, self.pad_id) if self.packing else pad_batch(chunk, self.pad_id)

    @property
    def label_tokens(self) -> int:
        """Tokens that carry a label in one epoch (what `useful tokens/s` counts)."""
        exs = [e for u in self.units for e in (u if self.packing else [u])]
        return sum(e.n_label_tokens for e in exs)


def eval_batches(examples: list[Example], batch_size: int, pad_id: int) -> list[Batch]:
    """Eval micro-batches in order, padded (packing would not change the loss)."""
    return [pad_batch(examples[i:i + batch_size], pad_id) for i in range(0, len(examples), batch_size)]
