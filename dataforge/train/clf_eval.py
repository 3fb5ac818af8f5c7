"""Classification-prompt evaluation by label log-likelihood (the symbol-tuning check).

Each row is a prompt, its target and its label set (for `transform.symbols` rows: the symbols of
`symbol_map`). The model's answer is the label whose continuation it finds most likely, so a small
model's free text cannot hide which label it prefers. Prompt and label are tokenized apart and
joined (the context/continuation split of lm-evaluation-harness). Prompts run once per batch,
left-padded, and the labels continue from their KV cache, so the cost hardly grows with the
number of labels; only the logits of the positions scored are computed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import polars as pl

from dataforge.errors import UserError


@dataclass
class ScoringOptions:
    """How a (prompt, label) pair is turned into tokens and scored."""

    separator: str | None = None
    """Text between prompt and label. Default: a space when the prompt does not end in whitespace (how
    `recipes/mixtures/symbol_tuning.yaml` writes completions), nothing in chat mode."""
    chat: bool = False
    """Wrap the prompt as a user message with the tokenizer's chat template; the label is the reply."""
    system_prompt: str | None = None
    """System message in chat mode."""
    score: str = "sum"
    """`sum` of the label tokens' log-probabilities, or their `mean` (length-normalised)."""
    batch_size: int = 8
    """Prompts per forward pass."""


def _context_text(prompt: str, tok: Any, opts: ScoringOptions) -> str:
    if not opts.chat:
        return prompt
    msgs = ([{"role": "system", "content": opts.system_prompt}] if opts.system_prompt else []) + \
        [{"role": "user", "content": prompt}]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def _separator(prompt: str, opts: ScoringOptions) -> str:
    if opts.separator is not None:
        return opts.separator
    if opts.chat or not prompt or prompt[-1].isspace():
        return ""
    return " "


def label_logprobs(model: Any, tok: Any, prompts: Sequence[str], label_sets: Sequence[Sequence[str]],
                   opts: ScoringOptions | None = None, on_batch: Any = None) -> list[list[float]]:
    """Per prompt, the log-likelihood (sum or mean over its tokens) of each of its labels as the
    continuation of the prompt.

    A batch of prompts runs once (left-padded, keeping the KV cache); then each label slot runs over a
    copy of that cache, so a prompt costs one forward pass however many labels it has."""
    import torch

    opts = opts or ScoringOptions()
    if opts.score not in ("sum", "mean"):
        raise UserError(f"score {opts.score!r}: choose sum or mean")
    device = next(model.parameters()).device
    start_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    items: list[tuple[list[int], list[list[int]]]] = []  # (prompt ids, ids of each label)
    for i, (prompt, labels) in enumerate(zip(prompts, label_sets, strict=True)):
        ctx = tok(_context_text(prompt, tok, opts), add_special_tokens=not opts.chat)["input_ids"] or [start_id]
        sep = _separator(prompt, opts)
        conts = []
        for label in labels:
            cont = tok(sep + str(label), add_special_tokens=False)["input_ids"]
            if not cont:
                raise UserError(f"row {i}: label {label!r} has no tokens")
            conts.append(cont)
        items.append((ctx, conts))
    out = [[math.nan] * len(labels) for labels in label_sets]
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    with torch.inference_mode():
        for start in range(0, len(order), opts.batch_size):
            rows = order[start:start + opts.batch_size]
            for i, vals in zip(rows, _score_prompts(model, [items[i] for i in rows], pad, device)):
                out[i] = [float(v.sum() if opts.score == "sum" else v.mean()) for v in vals]
            if on_batch is not None:
                on_batch(len(rows))
    return out


def _cache_keyword(model: Any) -> str:
    """`cache` (transformers >= 5.2x) or `past_key_values` (earlier): the forward argument and output field."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def _score_prompts(model: Any, items: list[tuple[list[int], list[list[int]]]], pad: int, device: Any) -> list[list[Any]]:
    """Token log-probabilities of every label of each (prompt, labels) item, one batch."""
    import copy

    import torch

    n, width = len(items), max(len(c) for c, _ in items)
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, (ctx, _) in enumerate(items):  # left padding: every prompt ends at the last column
        ids[r, width - len(ctx):] = torch.tensor(ctx)
        mask[r, width - len(ctx):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
    first = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    first_lp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # predicts each label's first token
    cache_kw = _cache_keyword(model)
    cache = getattr(first, cache_kw, None)
    results: list[list[Any]] = [[None] * len(conts) for _, conts in items]
    slots = max(len(conts) for _, conts in items)
    for j in range(slots):
        conts = [c[j] if j < len(c) else [pad] for _, c in items]
        longest = max(len(c) for c in conts)
        rest = None
        if longest > 1:  # feed label tokens but the last, after the prompt, to predict tokens 2..L
            feed = torch.full((n, longest - 1), pad, dtype=torch.long)
            feed_mask = torch.zeros((n, longest - 1), dtype=torch.long)
            for r, c in enumerate(conts):
                feed[r, :len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
                feed_mask[r, :len(c) - 1] = 1
            slot_cache = cache if j == slots - 1 else copy.deepcopy(cache)
            step_pos = pos[:, -1:] + 1 + torch.arange(longest - 1, device=device)[None, :]
            logits = model(input_ids=feed.to(device), attention_mask=torch.cat([mask, feed_mask.to(device)], dim=1),
                           position_ids=step_pos, use_cache=True, **{cache_kw: slot_cache}).logits
            rest = torch.log_softmax(logits.float(), dim=-1)
        for r, (_, labels) in enumerate(items):
            if j >= len(labels):
                continue
            c = labels[j]
            vals = [first_lp[r, c[0]]]
            if len(c) > 1:
                target = torch.tensor(c[1:], device=device)
                vals.append(rest[r, :len(c) - 1].gather(-1, target[:, None]).squeeze(-1))  # type: ignore[index]
            results[r][j] = torch.cat([v.reshape(-1) for v in vals])
    return results


def _as_labels(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)) or hasattr(value, "to_list"):
        items = list(value.to_list() if hasattr(value, "to_list") else value)
        return [str(v).strip() for v in items]
    return None


@dataclass
class ClassificationEval:
    """What `evaluate_classification` measured."""

    accuracy: float
    rows: int
    correct: int
    chance: float
    """Mean of 1 / (label set size): the accuracy of a uniform guess."""
    by_task: dict[str, dict[str, float]] = field(default_factory=dict)
    predicted: dict[str, int] = field(default_factory=dict)
    """How often each label was predicted (labels as written; symbols vary per prompt)."""
    seconds: float = 0.0
    predictions: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def metrics(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "rows": self.rows, "correct": self.correct, "chance": self.chance,
                "by_task": self.by_task, "seconds": round(self.seconds, 3)}


def resolve_label_sets(df: pl.DataFrame, *, target_column: str, labels_column: str | None,
                       labels: Sequence[str] | None, source: str) -> tuple[list[str], list[list[str]]]:
    """(targets, label set per row), checked: every target is in its row's label set."""
    targets = [("" if t is None else str(t)).strip() for t in df[target_column].to_list()]
    if labels:
        sets = [[str(x).strip() for x in labels]] * df.height
    elif labels_column:
        sets = []
        for i, v in enumerate(df[labels_column].to_list()):
            parsed = _as_labels(v)
            if not parsed:
                raise UserError(f"{source}: row {i}: column {labels_column!r} holds no label set "
                                f"(expected a JSON object or list, or a list): {str(v)[:80]!r}")
            sets.append(parsed)
    else:
        distinct = sorted(set(targets))
        if len(distinct) > 100:
            raise UserError(f"{source}: {len(distinct)} distinct targets and no label set; give --labels or "
                            "--labels-column (e.g. symbol_map)")
        sets = [distinct] * df.height
    for i, (t, s) in enumerate(zip(targets, sets)):
        if len(s) < 2:
            raise UserError(f"{source}: row {i}: a label set needs at least 2 labels, got {s}")
        if t not in s:
            raise UserError(f"{source}: row {i}: target {t!r} is not among its labels {s}")
    return targets, sets


def check_rows(df: pl.DataFrame, *, source: str, prompt_column: str = "prompt", target_column: str | None = None,
               labels_column: str | None = None, labels: Sequence[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """(targets, label set per row) after checking the columns and every row (before a model is loaded).
    Defaults: target `target`, else `completion`; label sets from `symbol_map` when present."""
    from dataforge.train.eval_data import require_columns

    if df.height == 0:
        raise UserError(f"{source}: no rows to evaluate")
    target_column = target_column or ("target" if "target" in df.columns else "completion")
    if labels_column is None and not labels and "symbol_map" in df.columns:
        labels_column = "symbol_map"
    require_columns(df, {"--prompt-column": prompt_column, "--target-column": target_column,
                         **({"--labels-column": labels_column} if labels_column else {})}, source)
    return resolve_label_sets(df, target_column=target_column, labels_column=labels_column, labels=labels,
                              source=source)


def evaluate_classification(df: pl.DataFrame, model: Any, tok: Any, *, source: str = "data",
                            prompt_column: str = "prompt", target_column: str | None = None,
                            labels_column: str | None = None, labels: Sequence[str] | None = None,
                            task_column: str | None = "task", opts: ScoringOptions | None = None,
                            on_batch: Any = None) -> ClassificationEval:
    """Accuracy of the most likely label against the target over the rows of `df`.

    `target_column` defaults to `target`, else `completion` (an export); `labels_column` to
    `symbol_map` when present (`transform.symbols`); without either the label set is the distinct
    targets. Rows are scored in batches; see `label_logprobs`.
    """
    t0 = time.perf_counter()
    targets, sets = check_rows(df, source=source, prompt_column=prompt_column, target_column=target_column,
                               labels_column=labels_column, labels=labels)
    prompts = ["" if p is None else str(p) for p in df[prompt_column].to_list()]
    scores = label_logprobs(model, tok, prompts, sets, opts, on_batch=on_batch)
    tasks = df[task_column].cast(pl.Utf8).to_list() if task_column and task_column in df.columns else None
    preds, per_task = [], {}
    predicted: dict[str, int] = {}
    correct = 0
    for i, (t, s, sc) in enumerate(zip(targets, sets, scores)):
        best = max(range(len(s)), key=lambda j: sc[j])
        ok = s[best] == t
        correct += ok
        predicted[s[best]] = predicted.get(s[best], 0) + 1
        preds.append({"row": i, "target": t, "predicted": s[best], "correct": ok,
                      "logprobs": dict(zip(s, (round(x, 4) for x in sc)))})
        if tasks is not None:
            acc = per_task.setdefault(tasks[i] or "", [0, 0])
            acc[0] += ok
            acc[1] += 1
    return ClassificationEval(
        accuracy=correct / len(targets), rows=len(targets), correct=correct,
        chance=sum(1 / len(s) for s in sets) / len(sets),
        by_task={k: {"accuracy": c / n, "rows": n} for k, (c, n) in sorted(per_task.items())},
        predicted=dict(sorted(predicted.items(), key=lambda kv: -kv[1])[:20]),
        seconds=time.perf_counter() - t0, predictions=preds)
