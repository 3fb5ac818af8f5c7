"""In-context prompts: exemplars sampled per class, assembled into prompts column-wise with polars.

The heavy lifting of `transform.symbols`, written so that a million queries take seconds: all
random draws are vectorised counter-based numbers (`randomness`), exemplars are gathered with
index arrays and each prompt is one list join over Arrow offsets - no Python loop per row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from dataforge.textutil.randomness import bits, integers, row_keys, uniform
from dataforge.textutil.symbols import SymbolPool, sample_symbols

DEFAULT_FORMATS = [
    "Input: {input}\nLabel: {label}",
    "Input: {input}\nOutput: {label}",
    "Text: {input}\nAnswer: {label}",
    "Sentence: {input}\nCategory: {label}",
    "Q: {input}\nA: {label}",
    "{input}\n-> {label}",
]
"""Input-label formats used when a recipe gives none (one is drawn per prompt)."""
DEFAULT_SEPARATORS = ["\n\n", "\n\n\n", "\n###\n"]
"""Separators between exemplars (one is drawn per prompt)."""


class FewShotError(ValueError):
    """The data cannot satisfy the request (a class is too small for k, a format lacks a slot)."""


def split_format(fmt: str) -> tuple[str, str, str]:
    """`"Q: {input}\\nA: {label}"` -> `("Q: ", "\\nA: ", "")`; both slots must appear once, input first."""
    if fmt.count("{input}") != 1 or fmt.count("{label}") != 1:
        raise FewShotError(f"format {fmt!r} must contain {{input}} and {{label}} exactly once")
    pre, rest = fmt.split("{input}")
    if "{label}" not in rest:
        raise FewShotError(f"format {fmt!r}: {{input}} must come before {{label}}")
    mid, post = rest.split("{label}")
    return pre, mid, post


@dataclass
class PromptOptions:
    """How prompts of one task are built."""

    k: tuple[int, int]
    """Exemplars per class: drawn uniformly from [min, max] per prompt (min == max: fixed)."""
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    separators: list[str] = field(default_factory=lambda: list(DEFAULT_SEPARATORS))
    instruction: str | None = None
    """Text put before the exemplars (None: no instruction, as in symbol tuning)."""
    pool: SymbolPool | None = None
    """Remap labels to symbols from this pool; None keeps the natural labels."""
    max_prompts: int | None = None
    """Use at most this many rows of the task as queries (a seeded random subset)."""
    prompts_per_query: int = 1
    """Prompts built per query row, each with its own k, exemplars, symbols, format and separator."""


def class_prompts(frame: pl.DataFrame, *, task: str, label_names: dict[str, str], opts: PromptOptions,
                  seed: int) -> pl.DataFrame:
    """Prompts for one task whose rows have columns `id`, `text`, `label` (str).

    Every row (or a seeded subset of `max_prompts`) becomes a query, `prompts_per_query` times.
    Per prompt: draw k in the range, then k distinct exemplars from every class, never the
    query itself; shuffle them; draw a format and separator; map each class to a symbol
    (distinct per prompt, never equal to a natural label) or keep natural labels. The output
    has `task, prompt, target, label, symbol_map, exemplar_ids, _parent_id` (the query's id),
    one row per prompt, in input order.
    """
    fmts = [split_format(f) for f in opts.formats]
    if not opts.separators:
        raise FewShotError("separators must not be empty")
    kmin, kmax = opts.k
    members = frame.select("id", "text", "label").sort("label", "id")
    classes = members["label"].unique(maintain_order=True).to_list()
    n_cls = len(classes)
    if n_cls < 2:
        raise FewShotError(f"task {task!r} has {n_cls} class(es); prompts need at least 2")
    names = [label_names.get(c, c) for c in classes]
    sizes = members.group_by("label", maintain_order=True).len()["len"].to_numpy()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    cls_of_member = np.repeat(np.arange(n_cls), sizes)
    pos_of_member = np.arange(members.height) - starts[cls_of_member]

    # Queries: every row in input order, or a seeded subset.
    order_idx = frame.select("id").with_row_index("_q").join(
        members.select("id").with_row_index("_m"), on="id", how="left", maintain_order="left")
    q_member = order_idx["_m"].to_numpy().astype(np.int64)
    if opts.max_prompts is not None and opts.max_prompts < q_member.size:
        pick = bits(row_keys(frame["id"]), seed, f"{task}:query-pick")
        keep = np.sort(np.argsort(pick, kind="stable")[: opts.max_prompts])
        q_member = q_member[keep]
    keys = row_keys(members["id"].gather(q_member))
    if opts.prompts_per_query > 1:
        # Copy r of a query draws with its key mixed with r (copy 0 keeps the query's own key).
        reps = opts.prompts_per_query
        q_member = np.repeat(q_member, reps)
        copy = np.tile(np.arange(reps, dtype=np.uint64), keys.size)
        keys = np.repeat(keys, reps)
        keys = np.where(copy == 0, keys, bits(keys, seed, f"{task}:copy", copy))
    nq = q_member.size
    q_ids = members["id"].gather(q_member)
    q_cls = cls_of_member[q_member]
    q_pos = pos_of_member[q_member]

    k = kmin + integers(keys, seed, f"{task}:k", kmax - kmin + 1) if kmax > kmin else np.full(nq, kmin)
    avail = sizes[None, :] - (np.arange(n_cls)[None, :] == q_cls[:, None])
    short = avail < k[:, None]
    if short.any():
        r, c = np.argwhere(short)[0]
        raise FewShotError(f"task {task!r}: class {classes[c]!r} has {sizes[c]} row(s); a prompt with "
                           f"k={k[r]} exemplars per class needs {k[r] + (q_cls[r] == c)}")

    chosen = np.stack([
        sample_distinct(keys, avail[:, c], k, kmax, seed, f"{task}:exemplar:{c}",
                        skip=np.where(q_cls == c, q_pos, np.iinfo(np.int64).max))
        for c in range(n_cls)], axis=1)
    valid = (np.arange(kmax)[None, None, :] < k[:, None, None]) & np.ones((1, n_cls, 1), dtype=bool)
    glob = np.where(valid, starts[None, :, None] + chosen, -1).reshape(nq, n_cls * kmax)
    cls_grid = np.broadcast_to(np.arange(n_cls)[None, :, None], (nq, n_cls, kmax)).reshape(nq, -1)

    # Shuffle exemplars of a prompt; padding sorts last.
    sort_key = uniform(keys[:, None], seed, f"{task}:order", np.arange(n_cls * kmax)[None, :])
    sort_key = np.where(valid.reshape(nq, -1), sort_key, 2.0)
    perm = np.argsort(sort_key, axis=1, kind="stable")
    glob = np.take_along_axis(glob, perm, axis=1)
    cls_grid = np.take_along_axis(cls_grid, perm, axis=1)
    counts = n_cls * k
    flat_mask = (np.arange(n_cls * kmax)[None, :] < counts[:, None]).ravel()
    ex_member = glob.ravel()[flat_mask]
    ex_cls = cls_grid.ravel()[flat_mask]
    ex_prompt = np.repeat(np.arange(nq), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    # Symbols (or natural labels) per (prompt, class), prompt-major.
    if opts.pool is not None:
        banned = set(classes) | set(names)
        sym_idx = sample_symbols(keys, n_cls, opts.pool, seed, banned=banned)
        sym_flat = opts.pool.symbols.gather(sym_idx.ravel())
    else:
        sym_flat = pl.Series("symbol", names * nq, dtype=pl.Utf8)

    f_q = integers(keys, seed, f"{task}:format", len(fmts))
    s_q = integers(keys, seed, f"{task}:separator", len(opts.separators))
    prompt = _assemble(members["text"], fmts, opts.separators, opts.instruction, sym_flat, n_cls,
                       ex_prompt, ex_member, ex_cls, offsets, q_member, f_q, s_q)
    exemplar_ids = pl.from_arrow(pa.LargeListArray.from_arrays(
        pa.array(offsets), members["id"].gather(ex_member).to_arrow()))
    out = pl.DataFrame({
        "prompt": prompt,
        "target": sym_flat.gather(np.arange(nq) * n_cls + q_cls),
        "label": pl.Series([names[c] for c in range(n_cls)], dtype=pl.Utf8).gather(q_cls),
        "exemplar_ids": exemplar_ids.cast(pl.List(pl.Utf8)),
        "_parent_id": q_ids,
    })
    if opts.pool is not None:
        parts: list[pl.Expr] = [pl.lit("{")]
        for c, name in enumerate(names):
            sym_c = sym_flat.gather(np.arange(nq) * n_cls + c)
            out = out.with_columns(sym_c.alias(f"_s{c}"))
            parts += [pl.lit(("" if c == 0 else ", ") + json.dumps(name) + ': "'), pl.col(f"_s{c}"), pl.lit('"')]
        parts.append(pl.lit("}"))
        symbol_map = pl.concat_str(parts)
    else:
        symbol_map = pl.lit(json.dumps(dict(zip(names, names)), ensure_ascii=False))
    return out.select(
        pl.lit(task, dtype=pl.Utf8).alias("task"), "prompt", "target", "label", symbol_map.alias("symbol_map"), "exemplar_ids", "_parent_id",
    )


def _assemble(texts: pl.Series, fmts: list[tuple[str, str, str]], separators: list[str], instruction: str | None,
              symbols: pl.Series, n_cls: int, ex_prompt: np.ndarray, ex_member: np.ndarray, ex_cls: np.ndarray,
              offsets: np.ndarray, q_member: np.ndarray, f_q: np.ndarray, s_q: np.ndarray) -> pl.Series:
    """Prompts as zero-copy slices of one buffer holding every piece, prompt after prompt.

    A prompt reads `head text conn text conn ... text tail` where `head` is [instruction +
    separator] + the format's prefix, `conn` (per prompt and class) is `mid symbol post
    separator pre`, and `tail` is the format's `mid` without trailing spaces. The pieces are
    gathered in that order and written out once (Arrow), so a prompt is a contiguous byte range.
    """
    nq = q_member.size
    pre_t = pl.Series([f[0] for f in fmts], dtype=pl.Utf8)
    mid_t = pl.Series([f[1] for f in fmts], dtype=pl.Utf8)
    post_t = pl.Series([f[2] for f in fmts], dtype=pl.Utf8)
    sep_t = pl.Series(separators, dtype=pl.Utf8)
    pc = np.repeat(np.arange(nq), n_cls)
    conn = pl.DataFrame({"m": mid_t.gather(f_q[pc]), "s": symbols, "p": post_t.gather(f_q[pc]),
                         "sep": sep_t.gather(s_q[pc]), "pre": pre_t.gather(f_q[pc])}) \
        .select(pl.concat_str(["m", "s", "p", "sep", "pre"]).alias("c"))["c"]
    head_parts = [pl.lit(instruction), pl.col("sep"), pl.col("pre")] if instruction else [pl.col("pre")]
    head = pl.DataFrame({"sep": sep_t.gather(s_q), "pre": pre_t.gather(f_q)}) \
        .select(pl.concat_str(head_parts).alias("h"))["h"]
    tail = pl.Series([f[1].rstrip(" ") for f in fmts], dtype=pl.Utf8).gather(f_q)
    # One table of every piece; a prompt is the run head, (text, conn) per exemplar, text, tail.
    table = pl.concat([texts.fill_null(""), head, conn, tail]).rechunk()
    h0, c0 = texts.len(), texts.len() + nq
    t0 = c0 + conn.len()
    counts = np.diff(offsets)
    start = np.concatenate([[0], np.cumsum(2 * counts + 3)]).astype(np.int64)
    idx = np.empty(int(start[-1]), dtype=np.int64)
    first, last = start[:-1], start[1:]
    idx[first] = h0 + np.arange(nq)
    pos_ex = first[ex_prompt] + 1 + 2 * (np.arange(ex_prompt.size) - offsets[:-1][ex_prompt])
    idx[pos_ex] = ex_member
    idx[pos_ex + 1] = c0 + ex_prompt * n_cls + ex_cls
    idx[last - 2] = q_member
    idx[last - 1] = t0 + np.arange(nq)
    pieces = table.gather(idx)  # string views: no bytes copied until `slice_joined`
    return slice_joined(pieces, start)


def slice_joined(pieces: pl.Series, bounds: np.ndarray) -> pl.Series:
    """`pieces[bounds[i]:bounds[i+1]]` concatenated, for each i: a zero-copy view of the pieces' buffer."""
    arr = pieces.rechunk().to_arrow(compat_level=pl.CompatLevel.oldest())
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    byte_offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    new = pa.LargeStringArray.from_buffers(len(bounds) - 1, pa.py_buffer(byte_offsets[bounds].copy()),
                                           arr.buffers()[2])
    return pl.Series("prompt", new)


def sample_distinct(keys: np.ndarray, avail: np.ndarray, k: np.ndarray, kmax: int, seed: int, purpose: str,
                    skip: np.ndarray | None = None) -> np.ndarray:
    """Per row i, `k[i]` distinct positions out of `range(avail[i])` (padding -1), shape (n, kmax).

    Floyd's algorithm, vectorised over rows; with `skip`, positions >= skip[i] move up by one, so
    a row can exclude its own position from a range of `avail[i] + 1`. Needs k <= avail.
    """
    n = keys.shape[0]
    chosen = np.full((n, kmax), -1, dtype=np.int64)
    for s in range(kmax):
        j = avail - k + s
        t = integers(keys, seed, purpose, np.maximum(j + 1, 1), counter=s)
        seen = (chosen == t[:, None]).any(axis=1)
        chosen[:, s] = np.where(s < k, np.where(seen, j, t), -1)
    if skip is not None:
        chosen = np.where((chosen >= 0) & (chosen >= skip[:, None]), chosen + 1, chosen)
    return chosen


def symbol_tuning_prompts(df: pl.DataFrame, seed: int, *, input_column: str = "text", label_column: str = "label",
                          task_column: str | None = None, task: str = "task",
                          label_names: dict[str, dict[str, str]] | None = None, k: tuple[int, int] = (2, 10),
                          pool: SymbolPool | None = None, instructions: dict[str, str] | None = None,
                          formats: list[str] | None = None, separators: list[str] | None = None,
                          max_prompts_per_task: int | None = None, prompts_per_query: int = 1,
                          passthrough: list[str] = ()) -> pl.DataFrame:
    """Symbol-tuning prompts for every task of `df` (the whole of `transform.symbols`).

    `df` needs `id`, `input_column`, `label_column` (and `task_column`, else all rows are task
    `task`). `label_names[task]` (or `["*"]`) names raw labels; `pool=None` keeps natural labels
    (relevant labels); `instructions[task]` (or `["*"]`) is put first when given. Output columns:
    `task, prompt, target, label, symbol_map, exemplar_ids, _parent_id` plus `passthrough`.
    """
    label_names = label_names or {}
    sel = [pl.col("id").cast(pl.Utf8), pl.col(input_column).cast(pl.Utf8).alias("text"),
           pl.col(label_column).cast(pl.Utf8).alias("label"),
           (pl.col(task_column).cast(pl.Utf8) if task_column else pl.lit(task, dtype=pl.Utf8)).alias("_task"),
           *[pl.col(c).alias(f"_pt{i}") for i, c in enumerate(passthrough)]]
    # Rows without a label cannot be exemplars or queries. Equal rows share a content id; one
    # copy is enough (and keeps ids unique within a task).
    frame = (df.select(sel).filter(pl.col("label").is_not_null())
             .unique(subset=["id", "_task"], keep="first", maintain_order=True))
    frames = []
    for name in frame["_task"].unique(maintain_order=True).to_list():
        part = frame.filter(pl.col("_task") == name)
        instruction = None
        if instructions:
            instruction = instructions.get(name, instructions.get("*"))
            if instruction is None:
                raise FewShotError(f"no instruction for task {name!r} (nor '*')")
        opts = PromptOptions(k=k, formats=list(formats or DEFAULT_FORMATS),
                             separators=list(separators or DEFAULT_SEPARATORS), instruction=instruction,
                             pool=pool, max_prompts=max_prompts_per_task, prompts_per_query=prompts_per_query)
        names = {**label_names.get("*", {}), **label_names.get(name, {})}
        out = class_prompts(part, task=name, label_names=names, opts=opts, seed=seed)
        if passthrough:
            pt = part.select(pl.col("id").alias("_parent_id"),
                             *[pl.col(f"_pt{i}").alias(c) for i, c in enumerate(passthrough)])
            out = out.join(pt, on="_parent_id", how="left", maintain_order="left")
        frames.append(out)
    if not frames:
        schema = {"task": pl.Utf8, "prompt": pl.Utf8, "target": pl.Utf8, "label": pl.Utf8, "symbol_map": pl.Utf8,
                  "exemplar_ids": pl.List(pl.Utf8), "_parent_id": pl.Utf8}
        return pl.DataFrame(schema=schema).with_columns(*[pl.lit(None).alias(c) for c in passthrough])
    return pl.concat(frames, how="vertical_relaxed")
