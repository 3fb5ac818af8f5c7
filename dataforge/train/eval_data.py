"""Rows for evaluation and ranking: a catalog dataset (`name` or `name@version`) or an export directory."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dataforge.errors import UserError


def read_rows(source: str, *, catalog: Path | None, split: str | None = None) -> tuple[pl.DataFrame, dict]:
    """The rows of `source` and where they came from (`{"dataset", "version"}` or `{"export", "split",
    "manifest_sha256"}`). An export is read through its manifest (every file's sha256 is checked);
    `split` picks `train` or `validation` (default: validation when the export has one, else train)."""
    path = Path(source)
    if path.is_dir():
        return _read_export(path, split)
    if split is not None:
        raise UserError(f"--split {split!r} applies to export directories; {source!r} is a catalog dataset")
    from dataforge.catalog import query as q

    if "/" in source or source.startswith("."):  # dataset names have neither: a path was meant
        raise UserError(f"{source}: no such export directory")
    name, _, ver = source.partition("@")
    version: int | None = None
    if ver:
        try:
            version = int(ver)
        except ValueError:
            raise UserError(f"{source!r}: expected DATASET or DATASET@VERSION (an integer)") from None
    if catalog is None or not Path(catalog).exists():  # a folder, a non-catalog file: the reader says which
        raise UserError(f"no catalog at {catalog}; run `dataforge build RECIPE` first")
    record = q.dataset_record(catalog, name, version)
    return q.read_dataset(catalog, name, version), {"dataset": name, "version": record["version"]}


def _read_export(path: Path, split: str | None) -> tuple[pl.DataFrame, dict]:
    from dataforge.export.manifest import read_export

    exp = read_export(path)  # refuses a tampered or half-written export
    split = split or ("validation" if "validation" in exp.splits else "train")
    return exp.read_split(split), {"export": str(path), "split": split, "manifest_sha256": exp.manifest_sha256}


def require_columns(df: pl.DataFrame, columns: dict[str, str], source: str) -> None:
    """Refuse a frame lacking a column; `columns` maps the option that named it to the column."""
    for option, col in columns.items():
        if col not in df.columns:
            raise UserError(f"{source}: no column {col!r} ({option}); it has: {', '.join(df.columns)}")
