"""`source.hf`: a Hugging Face `datasets` directory or local files through `load_dataset`."""

from __future__ import annotations

from typing import Any, Literal

import polars as pl

from dataforge.steps.base import PlanContext, StepError
from dataforge.steps.sources.base import Source, check_regular_file
from dataforge.steps.sources.checks import check_column_case, exact_integers


class HFSource(Source):
    """A Hugging Face `datasets` dataset: a `save_to_disk` directory, or local files via `load_dataset`."""

    type: Literal["source.hf"]
    path: str
    """A `save_to_disk` directory, or (with `builder`) a data file or directory."""
    builder: str | None = None
    """`load_dataset` builder for local files: json, csv, parquet, text, ..."""
    split: str = "train"
    """Split to read (from a DatasetDict or `load_dataset`)."""

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        return ctx.file_sha256(ctx.resolve(self.path))

    def check(self, ctx: PlanContext) -> None:
        p = ctx.resolve(self.path)
        if not p.is_dir():  # a `save_to_disk` or data directory, else one regular file
            check_regular_file(self.id, p)
        if self.builder is None and not (p.is_dir() and any(p.glob("*.json"))):
            raise StepError(self.id, "path", f"{p} is not a `save_to_disk` directory; set `builder:` "
                                             "to read plain files with load_dataset")
        super().check(ctx)

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        import datasets

        p = ctx.resolve(self.path)
        try:
            if self.builder is None:
                ds = datasets.load_from_disk(str(p))
            else:
                files = [str(f) for f in sorted(p.rglob("*")) if f.is_file()] if p.is_dir() else str(p)
                ds = datasets.load_dataset(self.builder, data_files=files)
        except Exception as e:
            raise StepError(self.id, "path", f"cannot load {p}: {e}") from None
        if isinstance(ds, datasets.DatasetDict):
            if self.split not in ds:
                raise StepError(self.id, "split", f"no split {self.split!r}; have: {', '.join(ds)}")
            ds = ds[self.split]
        df = exact_integers(self.id, pl.from_arrow(ds.data.table), str(p))
        mapping = self._mapping()
        check_column_case(self.id, list(mapping) if mapping else df.columns, str(p),
                          "columns" if mapping else "path")
        return df
