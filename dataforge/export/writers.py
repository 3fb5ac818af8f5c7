"""Writers for the export formats and the manifest's file list (the output directory is swapped in
by `dataforge.outdir`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from dataforge.hashing import file_sha256

FORMATS = ("jsonl", "parquet", "hf")
MANIFEST = "manifest.json"


def write_split(df: pl.DataFrame, out: Path, split: str, fmt: str) -> None:
    """Write one split (`train` / `validation`) of a jsonl or parquet export."""
    if fmt == "jsonl":
        df.write_ndjson(out / f"{split}.jsonl")
    elif fmt == "parquet":
        df.write_parquet(out / f"{split}.parquet", compression="zstd", statistics=False)
    else:
        raise ValueError(f"unknown format {fmt!r}")


def write_hf(splits: dict[str, pl.DataFrame], out: Path, fingerprint: str) -> None:
    """Save a `datasets.DatasetDict` with `save_to_disk` and check that `datasets.load_from_disk(out)` reads it back.

    Each split's `_fingerprint` is derived from `fingerprint` (not random) so the files are reproducible.
    """
    import datasets
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        dd = datasets.DatasetDict({
            name: datasets.Dataset(df.to_arrow(), fingerprint=hashlib.sha256(f"{fingerprint}:{name}".encode()).hexdigest()[:16])
            for name, df in splits.items()
        })
        dd.save_to_disk(str(out))
        back = datasets.load_from_disk(str(out))
        if {k: v.num_rows for k, v in back.items()} != {k: df.height for k, df in splits.items()}:
            raise RuntimeError(f"datasets.load_from_disk({out}) does not read back what was saved")
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def file_entries(root: Path) -> list[dict]:
    """`{path, bytes, sha256}` of every file below `root` except the manifest, sorted by path."""
    entries = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.relative_to(root).as_posix() != MANIFEST:
            entries.append({"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size,
                            "sha256": file_sha256(p)})
    return entries
