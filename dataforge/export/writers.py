"""Writers for the export formats, file hashing, and the atomic swap of the output directory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import polars as pl

from dataforge.errors import UserError
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


def check_replaceable(out: Path) -> None:
    """Refuse to replace anything but a missing/empty directory or an earlier export (has a manifest)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise UserError(f"--out {out} is a non-empty directory without {MANIFEST} (not an earlier export); "
                        "refusing to replace it")


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A fresh directory beside `out`; on success it replaces `out`, on failure it is removed.

    An earlier export at `out` stays intact until the new one is complete.
    """
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{tag}"
    if out.exists():
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old.exists():
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
