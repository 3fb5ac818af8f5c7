"""The export contract: the typed `manifest.json` that `dataforge export` writes, and `read_export`,
which checks an export directory against it before anything reads the data.

A consumer (the trainer, a user's script) calls `read_export(dir)`: it refuses a directory whose
manifest is missing or of another `manifest_version`, and any file that is missing, of another size
or sha256 than the manifest says, or not listed at all (a tampered or half-written export).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataforge.errors import UserError
from dataforge.export.mixture import DedupConfig, SplitConfig
from dataforge.export.writers import MANIFEST
from dataforge.hashing import file_sha256

MANIFEST_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManifestMixture(_Model):
    """The mixture file the export came from."""

    name: str
    """Mixture name."""
    file: str
    """Path of the mixture file as given to `dataforge export`."""
    sha256: str
    """sha256 of the mixture file's bytes."""


class ManifestSource(_Model):
    """One catalog dataset of the mixture and what it contributed."""

    dataset: str
    """Catalog dataset name."""
    version: int | None = None
    """Catalog version read."""
    fingerprint: str | None = None
    """Fingerprint of the step output behind that version."""
    build_id: str | None = None
    """Build that produced it."""
    step_id: str | None = None
    """Step that produced it."""
    rows: int
    """Rows in the dataset (after templating)."""
    dedup_dropped: int
    """Rows dropped as duplicates of an earlier source's rows."""
    after_dedup: int
    """Rows left after dedup."""
    weight: float
    """Weight in the rate."""
    cap: int | None
    """Cap applied (source's, else the mixture's)."""
    capped: int
    """min(rows after dedup, cap)."""
    rate: float
    """Share of the export drawn from this source."""
    rate_exact: str
    """The rate as an exact fraction."""
    selected: int
    """Rows sampled from this source."""
    train: int
    """Of them, rows in the train split."""
    validation: int
    """Of them, rows in the validation split."""


class ManifestFile(_Model):
    """A file of the export, relative to its directory."""

    path: str
    """POSIX path below the export directory."""
    bytes: int = Field(ge=0)
    """Size in bytes."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """sha256 of the file's bytes."""


class Manifest(_Model):
    """`manifest.json` of an export (version `manifest_version`)."""

    manifest_version: Literal[1] = MANIFEST_VERSION
    """Version of this contract; a reader refuses versions it does not know."""
    dataforge_version: str
    """dataforge version that wrote the export."""
    mixture: ManifestMixture
    """The mixture file."""
    format: Literal["jsonl", "parquet", "hf"]
    """File format of the splits."""
    style: Literal["text", "chat"]
    """`chat` exports also carry a `messages` column."""
    seed: int
    """Mixture seed."""
    total_requested: int | None
    """The mixture's `total`."""
    cap: int | None
    """The mixture's default cap."""
    rows: dict[str, int]
    """Rows per split (`train`, `validation`)."""
    columns: list[str]
    """Columns of every split, in order."""
    sources: list[ManifestSource]
    """Per-source counts, caps and rates."""
    split: SplitConfig
    """The split settings."""
    dedup: DedupConfig | None
    """The dedup settings."""
    files: list[ManifestFile]
    """Every file of the export except `manifest.json`, sorted by path."""

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


@dataclass
class Export:
    """An export directory whose files matched its manifest when it was read."""

    path: Path
    manifest: Manifest
    manifest_sha256: str
    """sha256 of `manifest.json` (names the export's exact content: it lists every file's hash)."""

    @property
    def splits(self) -> list[str]:
        return list(self.manifest.rows)

    def read_split(self, split: str) -> pl.DataFrame:
        """One split's rows (`train` / `validation`) as a polars frame."""
        if split not in self.manifest.rows:
            raise UserError(f"export {self.path} has no {split!r} split (it has: {', '.join(self.splits)})")
        fmt = self.manifest.format
        if fmt == "jsonl":
            path = self.path / f"{split}.jsonl"
            if path.stat().st_size == 0:
                return pl.DataFrame(schema={c: pl.Utf8 for c in self.manifest.columns})
            with open(path, "rb") as fh:  # polars would read a path holding `*?[` as a glob pattern
                return pl.read_ndjson(fh)
        if fmt == "parquet":
            return pl.read_parquet(self.path / f"{split}.parquet", glob=False)
        import datasets

        return pl.from_arrow(datasets.load_from_disk(str(self.path))[split].data.table)


def _bad(path: Path, message: str) -> UserError:
    return UserError(f"{message}; refusing to read this export (re-run `dataforge export`)", file=str(path))


def read_export(directory: str | Path) -> Export:
    """Open an export directory after checking every file against its manifest (UserError if not)."""
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"no export directory at {root}", file=str(root))
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise _bad(root, f"no {MANIFEST}: not an export, or one that was never finished")
    raw = mpath.read_bytes()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(mpath, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise _bad(mpath, "not a JSON object")
    if data.get("manifest_version") != MANIFEST_VERSION:
        got = data.get("manifest_version")
        raise _bad(mpath, f"manifest_version {got!r} is not {MANIFEST_VERSION}, the version this dataforge reads"
                   if got is not None else "no manifest_version (written before the typed contract)")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _bad(mpath, f"malformed manifest: {where}: {first['msg']} ({e.error_count()} problem(s))") from None
    listed = {f.path for f in manifest.files}
    for f in manifest.files:
        p = root / f.path
        if ".." in Path(f.path).parts or Path(f.path).is_absolute():
            raise _bad(mpath, f"file entry {f.path!r} points outside the export")
        if not p.is_file():
            raise _bad(p, "listed in the manifest but missing (half-written or partly deleted export)")
        size = p.stat().st_size
        if size != f.bytes:
            raise _bad(p, f"{size:,} bytes, the manifest says {f.bytes:,} (truncated or changed)")
        if file_sha256(p) != f.sha256:
            raise _bad(p, "sha256 differs from the manifest (the file was changed after export)")
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != MANIFEST and rel not in listed:
            raise _bad(p, "not listed in the manifest (added after export)")
    return Export(root, manifest, hashlib.sha256(raw).hexdigest())
