"""Source step kinds: read rows from files, the catalog, or the recipe itself."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field

from dataforge.fieldtypes import Regex
from dataforge.steps.base import PlanContext, RunContext, Step, StepError


def file_sha256(path: Path) -> str:
    """Content hash of a file, or of every file below a directory."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else "").encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _line_of_offset(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


class Source(Step):
    """Shared options of every source: column selection/renaming, limit, deterministic sample."""

    columns: dict[str, str] | list[str] | None = None
    """Keep only these columns: a list of names, or a mapping `new_name: source_column`."""
    limit: int | None = Field(default=None, ge=0)
    """Keep the first N rows (after reading, before sampling)."""
    sample: int | float | None = Field(default=None, gt=0)
    """Keep a deterministic random sample (seeded by the recipe seed): N rows, or a fraction < 1."""
    allow_empty: bool = False
    """Accept a source with no rows instead of failing the build."""

    is_source: ClassVar[bool] = True
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[int] = 0
    new_rows: ClassVar[bool] = True

    # Subclasses implement these two.
    def read(self, ctx: RunContext) -> pl.DataFrame:
        raise NotImplementedError

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        """Column names before selection, when cheap to know; None otherwise."""
        return None

    def _mapping(self) -> dict[str, str] | None:
        if self.columns is None:
            return None
        if isinstance(self.columns, list):
            return {c: c for c in self.columns}
        return dict(self.columns)

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        mapping = self._mapping()
        if mapping is not None:
            return list(mapping)
        return self._planned_raw

    _planned_raw: list[str] | None = None

    def check(self, ctx: PlanContext) -> None:
        raw = self.raw_columns(ctx)
        self._planned_raw = raw
        self._check_mapping(raw)

    def _check_mapping(self, raw: list[str] | None) -> None:
        mapping = self._mapping()
        if mapping is None or raw is None:
            return
        missing = [src for src in mapping.values() if src not in raw]
        if missing:
            raise StepError(self.id, "columns",
                            f"column(s) {', '.join(map(repr, missing))} not in the source; "
                            f"it has: {', '.join(raw) or '(none)'}")

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> pl.DataFrame:
        try:
            df = self.read(ctx)
        except pl.exceptions.PolarsError as e:  # e.g. one column holding numbers and lists: the data's problem
            where = next((f for f in ("path", "rows", "query") if f in type(self).model_fields), None)
            raise StepError(self.id, where, f"cannot make a table of the rows: {str(e).splitlines()[0]}") from None
        mapping = self._mapping()
        if df.width == 0 and df.height == 0 and self.allow_empty and mapping is not None:
            df = pl.DataFrame(schema={src: pl.Utf8 for src in mapping.values()})  # an empty file has no columns
        self._check_mapping(df.columns)
        if mapping is not None:
            df = df.select([pl.col(src).alias(dst) for dst, src in mapping.items()])
        if "id" in df.columns and (mapping is None or "id" not in mapping):
            if "source_id" in df.columns:
                raise StepError(self.id, "columns", "the data has both `id` and `source_id` columns; `id` is "
                                "dataforge's row id, so pick and rename yours with `columns:`")
            df = df.rename({"id": "source_id"})
        if self.limit is not None:
            df = df.head(self.limit)
        if self.sample is not None:
            df = _sample(df, self.sample, ctx.seed)
        if df.height == 0 and not self.allow_empty:
            raise StepError(self.id, None, "source produced no rows (set allow_empty: true to accept that)")
        if df.width == 0:
            raise StepError(self.id, None, "source has no columns")
        return df


def _sample(df: pl.DataFrame, sample: int | float, seed: int) -> pl.DataFrame:
    n = int(sample) if sample >= 1 else int(round(df.height * sample))
    if n >= df.height:
        return df
    # Rank rows by a seeded hash of their position: stable across library versions.
    keys = [hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest() for i in range(df.height)]
    order = sorted(range(df.height), key=keys.__getitem__)[:n]
    return df[sorted(order)]


class FileSource(Source):
    path: str
    """File to read, relative to the recipe file."""
    encoding: str = "utf-8"
    """Text encoding of the file."""

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        return file_sha256(ctx.resolve(self.path))

    def check(self, ctx: PlanContext) -> None:
        p = ctx.resolve(self.path)
        if not p.exists():
            raise StepError(self.id, "path", f"file not found: {p}")
        super().check(ctx)

    def _text(self, ctx: PlanContext) -> str:
        p = ctx.resolve(self.path)
        raw = p.read_bytes()
        try:
            return raw.decode("utf-8-sig" if self.encoding.lower() in ("utf-8", "utf8") else self.encoding)
        except UnicodeDecodeError as e:
            raise StepError(self.id, "path", f"{p}:{_line_of_offset(raw, e.start)}: not valid {self.encoding} "
                            f"(byte 0x{raw[e.start]:02x} at offset {e.start}); set `encoding:`") from None
        except LookupError:
            raise StepError(self.id, "encoding", f"unknown encoding {self.encoding!r}") from None


class JsonlSource(FileSource):
    """One JSON object per line."""

    type: Literal["source.jsonl"]

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        with open(ctx.resolve(self.path), "rb") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        obj = json.loads(line)
                    except (ValueError, UnicodeDecodeError):
                        return None  # reported with its line when read
                    return list(obj) if isinstance(obj, dict) else None
        return None  # no rows, so no columns to check `columns` against

    def read(self, ctx: RunContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        if self.encoding.lower() in ("utf-8", "utf8"):
            mapping = self._mapping()
            df = _read_ndjson_fast(p, list(dict.fromkeys(mapping.values())) if mapping else None)
            if df is not None:
                return df
        rows = []
        # Split on newlines only: JSON strings may hold U+2028/U+0085, which str.splitlines() would break on.
        for n, line in enumerate(self._text(ctx).split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise StepError(self.id, "path", f"{p}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise StepError(self.id, "path", f"{p}:{n}: expected a JSON object, got {type(obj).__name__}")
            rows.append(obj)
        return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def _read_ndjson_fast(path: Path, wanted: list[str] | None = None) -> pl.DataFrame | None:
    """Parse a JSONL file with Arrow's multi-threaded reader (schema over all blocks), else polars.

    With `wanted`, only those columns are built (typed from the file's first MiB), which roughly
    halves the parse when a recipe selects a few columns of a wide file. Returns None when no
    reader accepts the file, so the caller's line-by-line path can name the bad line.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    arrow_errors = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
    read = pj.ReadOptions(block_size=16 << 20)
    schema = _head_schema(path, wanted) if wanted else None
    parses = [pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")] if schema else []
    for parse in [*parses, pj.ParseOptions()]:
        try:
            table = pj.read_json(path, read_options=read, parse_options=parse)
            table.validate(full=True)  # Arrow's reader does not check UTF-8; this does
            return pl.from_arrow(table)  # type: ignore[return-value]
        except arrow_errors:
            continue  # e.g. a type that changes after the first MiB: read every column instead
    try:
        return pl.read_ndjson(path, infer_schema_length=None)
    except Exception:
        return None


def _head_schema(path: Path, wanted: list[str]):
    """Arrow schema of the `wanted` columns as the file's first MiB of whole lines types them, or None."""
    import pyarrow as pa
    import pyarrow.json as pj

    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    head = head[: head.rfind(b"\n") + 1]
    if not head.strip():
        return None
    try:
        found = pj.read_json(pa.BufferReader(head)).schema
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if any(c not in found.names or pa.types.is_null(found.field(c).type) for c in wanted):
        return None
    return pa.schema([found.field(c) for c in wanted])


class JsonSource(FileSource):
    """A JSON array of objects, or an object holding such an array under `records_key`."""

    type: Literal["source.json"]
    records_key: str | None = None
    """Key of the array inside a top-level object, e.g. `data`."""

    _parsed: tuple[tuple, list[dict]] | None = None  # (file identity, records) from validation, for the run

    def _records(self, ctx: PlanContext) -> list[dict]:
        p = ctx.resolve(self.path)
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        if self._parsed is not None and self._parsed[0] == key:
            return self._parsed[1]
        recs = self._parse(ctx, p)
        self._parsed = (key, recs)
        return recs

    def _parse(self, ctx: PlanContext, p: Path) -> list[dict]:
        try:
            doc = json.loads(self._text(ctx))
        except ValueError as e:
            raise StepError(self.id, "path", f"{p}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if self.records_key is not None:
            if not isinstance(doc, dict) or self.records_key not in doc:
                raise StepError(self.id, "records_key", f"{p}: no top-level key {self.records_key!r}")
            doc = doc[self.records_key]
        if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):
            lengths = {len(v) for v in doc.values()}
            if len(lengths) <= 1:  # columnar: {"col": [...], ...}
                return pl.DataFrame(doc).to_dicts()
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise StepError(self.id, "path", f"{p}: expected an array of objects (or set records_key)")
        return doc

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        recs = self._records(ctx)
        cols: dict[str, None] = {}
        for r in recs[:1000]:
            cols.update(dict.fromkeys(r))
        return list(cols)

    def read(self, ctx: RunContext) -> pl.DataFrame:
        recs = self._records(ctx)
        self._parsed = None  # the frame holds the data from here on
        return pl.DataFrame(recs, infer_schema_length=None) if recs else pl.DataFrame()


class CsvSource(FileSource):
    """Comma- or tab-separated values."""

    type: Literal["source.csv", "source.tsv"]
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    """Field separator; default `,` for source.csv and a tab for source.tsv."""
    header: bool = True
    """Whether the first line names the columns."""
    names: list[str] | None = None
    """Column names when the file has no header line."""
    quote_char: str | None = '"'
    """Quote character; null turns quoting off."""
    infer_types: bool = False
    """Infer numbers and booleans; default keeps every field a string."""

    def _sep(self) -> str:
        return self.delimiter or ("\t" if self.type == "source.tsv" else ",")

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        if not self.header:
            return self.names
        first = self._text(ctx).split("\n", 1)[0].rstrip("\r")
        if not first.strip():
            return []
        df = pl.read_csv(first.encode(), separator=self._sep(), has_header=False, quote_char=self.quote_char)
        return [str(v) for v in df.row(0)] if df.height else []

    def read(self, ctx: RunContext) -> pl.DataFrame:
        p = ctx.resolve(self.path)
        text = self._text(ctx)
        if not text.strip():
            return pl.DataFrame(schema={c: pl.Utf8 for c in self.names or []})
        try:
            df = pl.read_csv(text.encode(), separator=self._sep(), has_header=self.header,
                             new_columns=self.names, quote_char=self.quote_char,
                             infer_schema=self.infer_types, infer_schema_length=10000)
        except pl.exceptions.PolarsError as e:
            raise StepError(self.id, "path", f"{p}: cannot parse as CSV: {str(e).splitlines()[0]}") from None
        return df


class ParquetSource(FileSource):
    """An Apache Parquet file."""

    type: Literal["source.parquet"]

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        try:
            return list(pl.read_parquet_schema(ctx.resolve(self.path)))
        except Exception as e:
            raise StepError(self.id, "path", f"{ctx.resolve(self.path)}: not a readable parquet file ({e})") from None

    def read(self, ctx: RunContext) -> pl.DataFrame:
        return pl.read_parquet(ctx.resolve(self.path))


class TextSource(FileSource):
    """One example per line, split into fields by a regex, e.g. `^(\\S+)\\s+(.*)$` -> label, text."""

    type: Literal["source.text"]
    pattern: Regex = r"^(\S+)\s+(.*)$"
    """Regex applied to each line; its groups (or named groups) become columns."""
    fields: list[str] | None = ["label", "text"]
    """Names of the regex's groups, in order; ignored when the pattern uses named groups."""
    on_mismatch: Literal["error", "skip"] = "error"
    """What to do with a non-blank line the pattern does not match."""

    def _names(self) -> list[str]:
        rx = re.compile(self.pattern)
        if rx.groupindex:
            return list(rx.groupindex)
        names = self.fields or [f"field_{i}" for i in range(1, rx.groups + 1)]
        if len(names) != rx.groups:
            raise StepError(self.id, "fields", f"pattern has {rx.groups} group(s) but {len(names)} field name(s)")
        return names

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        return self._names()

    def read(self, ctx: RunContext) -> pl.DataFrame:
        rx = re.compile(self.pattern)
        names = self._names()
        p = ctx.resolve(self.path)
        cols: list[list[str]] = [[] for _ in names]
        # Split on \n / \r\n only: str.splitlines also breaks at U+0085, which Latin-1 files use for '...'.
        for n, line in enumerate(re.split(r"\r?\n|\r", self._text(ctx)), 1):
            if not line.strip():
                continue
            m = rx.match(line)
            if m is None:
                if self.on_mismatch == "skip":
                    continue
                raise StepError(self.id, "pattern", f"{p}:{n}: line does not match the pattern: {line[:80]!r}")
            groups = m.groups() if not rx.groupindex else [m.group(k) for k in names]
            for c, g in zip(cols, groups):
                c.append(g)
        return pl.DataFrame(dict(zip(names, cols)), schema={k: pl.Utf8 for k in names})


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
        return file_sha256(ctx.resolve(self.path))

    def check(self, ctx: PlanContext) -> None:
        p = ctx.resolve(self.path)
        if not p.exists():
            raise StepError(self.id, "path", f"not found: {p}")
        if self.builder is None and not (p.is_dir() and any(p.glob("*.json"))):
            raise StepError(self.id, "path", f"{p} is not a `save_to_disk` directory; set `builder:` "
                                             "to read plain files with load_dataset")
        super().check(ctx)

    def read(self, ctx: RunContext) -> pl.DataFrame:
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
        return pl.from_arrow(ds.data.table)


class SqlSource(Source):
    """Rows from a read-only SQL query over the catalog, e.g. a filtered earlier dataset."""

    type: Literal["source.sql"]
    query: str
    """A SELECT over catalog datasets (their views) and tables."""

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        from dataforge.catalog import query as q

        return q.catalog_state(ctx.catalog_path)

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        from dataforge.catalog import query as q

        try:
            return q.describe(ctx.catalog_path, self.query)
        except Exception as e:
            raise StepError(self.id, "query", str(e).splitlines()[0]) from None

    def read(self, ctx: RunContext) -> pl.DataFrame:
        from dataforge.catalog import query as q

        try:
            return q.run_select(ctx.catalog_path, self.query)
        except Exception as e:
            raise StepError(self.id, "query", str(e).splitlines()[0]) from None


class InlineSource(Source):
    """Rows written in the recipe itself."""

    type: Literal["source.inline"]
    rows: list[dict[str, Any]] = Field(min_length=0)
    """The rows, as a list of mappings."""

    def raw_columns(self, ctx: PlanContext) -> list[str] | None:
        cols: dict[str, None] = {}
        for r in self.rows:
            cols.update(dict.fromkeys(r))
        return list(cols)

    def read(self, ctx: RunContext) -> pl.DataFrame:
        return pl.DataFrame(self.rows, infer_schema_length=None) if self.rows else pl.DataFrame()
