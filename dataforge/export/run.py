"""`export`: read a mixture's datasets from the catalog, mix them, and write files plus `manifest.json`.

Order of work: template each source -> cross-dataset dedup -> rates and counts (rates.py) ->
seeded sample per source -> group split -> (chat) messages -> seeded shuffle -> write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from dataforge import __version__
from dataforge.errors import UserError
from dataforge.export import mixing
from dataforge.export.manifest import Manifest
from dataforge.export.mixture import MixtureFile, load_mixture
from dataforge.export.rates import allocate
from dataforge.export.writers import FORMATS, MANIFEST, file_entries, write_hf, write_split
from dataforge.outdir import check_replaceable, out_path, staged_dir
from dataforge.rows import content_ids
from dataforge.textutil.templating import apply_templates, required_variables


@dataclass
class ExportResult:
    """Where the export went and its manifest (also written as `manifest.json`)."""

    out: Path
    manifest: Manifest


def export(mixture: str | Path, out: str | Path, fmt: str = "jsonl", catalog: str | Path | None = None) -> ExportResult:
    """Export a mixture of catalog datasets to `out` (replaced atomically). The catalog is only read."""
    from dataforge.catalog import query as q

    out = out_path(out, "export")
    mf = load_mixture(mixture)
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    cat = Path(catalog) if catalog is not None else None
    if cat is None or not cat.exists():  # a folder, a non-catalog file: the reader says which
        raise UserError(f"no catalog at {cat}; run `dataforge build RECIPE` first")
    frames, infos = [], []
    for i, src in enumerate(mf.mixture.sources):
        try:
            info = q.dataset_record(cat, src.dataset, src.version)
            frames.append(q.read_dataset(cat, src.dataset, src.version))
        except UserError as e:
            raise mf.error(e.message, ("sources", i, "dataset")) from None
        infos.append({k: info[k] for k in ("version", "fingerprint", "build_id", "step_id")})
    return export_frames(mf, frames, out, fmt, infos)


def _prepare(mf: MixtureFile, i: int, df: pl.DataFrame) -> tuple[pl.DataFrame, set[str]]:
    """One source's rows as prompt/completion (+ id, source, kept and group columns), and the
    kept/group columns the source lacks."""
    m = mf.mixture
    src = m.sources[i]
    template, where = (src.template, ("sources", i, "template")) if src.template else (m.template, ("template",))
    if template is not None:
        missing = sorted(required_variables(template.templates, template) - set(df.columns))
        if missing:
            raise mf.error(f"dataset {src.dataset!r} lacks column(s) {', '.join(map(repr, missing))} read by the "
                           f"templates (or named as answer_column); it has: {', '.join(df.columns)}", where)
        if "id" not in df.columns:
            df = df.with_columns(content_ids(df))
        try:
            df = apply_templates(df, template.templates, template, m.seed, task=src.dataset)
        except (jinja2.TemplateError, ValueError) as e:  # e.g. a template that fails on some row's values
            raise mf.error(f"templating dataset {src.dataset!r} failed: {e}", where) from None
        df = df.drop("completion", strict=False).rename({"target": "completion"})
    else:
        if "completion" not in df.columns and "target" in df.columns:  # as transform.template/symbols write it
            df = df.rename({"target": "completion"})
        missing = [c for c in ("prompt", "completion") if c not in df.columns]
        if missing:
            raise mf.error(f"dataset {src.dataset!r} has no {' or '.join(missing)} column; give a `template` "
                           f"(it has: {', '.join(df.columns)})", ("sources", i))
    # A kept column a source lacks is null there; a source without the group column is one group.
    group = m.split.group_column
    lacks = {c for c in [*m.keep_columns, *([group] if group else [])] if c not in df.columns} - {mixing.SOURCE}
    extra = [pl.col(c) if c not in lacks else pl.lit(None, pl.Utf8).alias(c)
             for c in m.keep_columns if c not in ("prompt", "completion", "id", mixing.SOURCE)]
    if group and group not in (*m.keep_columns, "prompt", "completion", "id", mixing.SOURCE):
        extra.append(pl.col(group).cast(pl.Utf8) if group not in lacks else pl.lit(src.dataset).alias(group))
    ids = [pl.col("id")] if "id" in df.columns else [pl.lit(None, pl.Utf8).alias("id")]
    out = df.select(pl.col("prompt").cast(pl.Utf8), pl.col("completion").cast(pl.Utf8),
                    pl.lit(src.dataset).alias(mixing.SOURCE), *ids, *extra)
    return out, lacks


def export_frames(mf: MixtureFile, frames: list[pl.DataFrame], out: Path, fmt: str,
                  infos: list[dict[str, Any]] | None = None) -> ExportResult:
    """Mix, split and write `frames` (one per mixture source, in order) under `out`."""
    m = mf.mixture
    check_replaceable(out, MANIFEST, "export")  # fail before the work, not after it
    infos = infos or [{} for _ in frames]
    prepared, lacking = zip(*[_prepare(mf, i, df) for i, df in enumerate(frames)]) if frames else ((), ())
    prepared = list(prepared)
    for c in m.keep_columns:
        if all(c in lacks for lacks in lacking):
            raise mf.error(f"no source has a column {c!r}", ("keep_columns",))
    group = m.split.group_column
    if group and m.split.validation_fraction > 0 and all(group in lacks for lacks in lacking):
        raise mf.error(f"no source has a column {group!r}", ("split", "group_column"))
    sizes_in = [f.height for f in prepared]

    dropped = [0] * len(prepared)
    if m.dedup is not None:
        if m.dedup.column not in prepared[0].columns:
            raise mf.error(f"no column {m.dedup.column!r} to dedup on; have: {', '.join(prepared[0].columns)}",
                           ("dedup", "column"))
        prepared, dropped = mixing.dedup_across(prepared, m.dedup.column, m.dedup.normalize)

    caps = [s.cap if s.cap is not None else m.cap for s in m.sources]
    try:
        alloc = allocate([f.height for f in prepared], caps, [s.weight for s in m.sources], m.total)
    except ValueError as e:
        raise mf.error(str(e), ("total",)) from None
    rows = pl.concat([mixing.sample_rows(f, n, m.seed, i) for i, (f, n) in enumerate(zip(prepared, alloc.counts))],
                     how="vertical_relaxed", rechunk=False)
    del prepared  # large frames: keep one copy of the strings alive at a time

    is_val = mixing.split_groups(rows, m.split.group_column, m.split.validation_fraction, m.seed)
    if m.style == "chat":
        rows = mixing.with_messages(rows, m.system_prompt)
    columns = list(dict.fromkeys(["prompt", "completion", *(["messages"] if m.style == "chat" else []),
                                  mixing.SOURCE, "id", *m.keep_columns]))
    splits = {"train": rows.filter(~is_val) if is_val.any() else rows}
    if m.split.validation_fraction > 0:
        splits["validation"] = rows.filter(is_val)
    del rows
    for k in list(splits):
        splits[k] = mixing.shuffle_rows(splits[k].select(columns), m.seed)

    per_split = {k: v.group_by(mixing.SOURCE).len() for k, v in splits.items()}

    def split_count(split: str, name: str) -> int:
        if split not in per_split:
            return 0
        hit = per_split[split].filter(pl.col(mixing.SOURCE) == name)
        return int(hit["len"][0]) if hit.height else 0

    sources = []
    for i, s in enumerate(m.sources):
        sources.append({
            "dataset": s.dataset, **infos[i],
            "rows": sizes_in[i], "dedup_dropped": dropped[i], "after_dedup": sizes_in[i] - dropped[i],
            "weight": s.weight, "cap": caps[i], "capped": alloc.capped[i],
            "rate": float(alloc.rates[i]), "rate_exact": str(alloc.rates[i]),
            "selected": alloc.counts[i],
            "train": split_count("train", s.dataset), "validation": split_count("validation", s.dataset),
        })
    fingerprint = json.dumps([mf.sha256, m.seed, fmt, [x.get("fingerprint") for x in infos]])
    with staged_dir(out, MANIFEST, "export") as tmp:
        if fmt == "hf":
            write_hf(splits, tmp, fingerprint)
        else:
            for name, df in splits.items():
                write_split(df, tmp, name, fmt)
        manifest = Manifest(
            dataforge_version=__version__,
            mixture={"name": m.name, "file": str(mf.path), "sha256": mf.sha256},
            format=fmt, style=m.style, seed=m.seed, total_requested=m.total, cap=m.cap,
            rows={k: v.height for k, v in splits.items()}, columns=columns, sources=sources,
            split=m.split, dedup=m.dedup, files=file_entries(tmp),
        )
        (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    return ExportResult(out, manifest)
