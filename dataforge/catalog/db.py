"""Opening the catalog file: short-lived connections, bounded waits on another process's lock.

DuckDB lets one process hold a file for writing and nobody else open it meanwhile.
dataforge therefore never keeps the catalog open during long work: every write is a
short transaction on a fresh connection, so a `dataforge sql` in another terminal
gets in between writes. A connection that cannot get the lock retries briefly and
then fails with `CatalogBusy` instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Iterator

import duckdb

from dataforge.errors import CatalogBusy, UserError
from dataforge.sqlquote import quote_literal

ENV_VAR = "DATAFORGE_CATALOG"
_lock = threading.RLock()


def default_catalog_path() -> Path:
    """`$DATAFORGE_CATALOG`, else `catalog/dataforge.duckdb` under the current directory."""
    return Path(os.environ.get(ENV_VAR) or "catalog/dataforge.duckdb")


def _is_lock_error(e: Exception) -> bool:
    text = str(e).lower()
    return "lock" in text and ("conflicting" in text or "could not set lock" in text or "in use" in text)


def _holder(e: Exception) -> str:
    """Who holds the lock, as DuckDB's message names it: a build writing, or any command reading."""
    m = re.search(r"held in (\S+) \(PID (\d+)\)", str(e))
    what = "a build writing, or a command reading it"
    return f" (PID {m[2]}, {Path(m[1]).name}: {what})" if m else f" ({what})"


# DuckDB files carry this magic at byte 8 (the header starts with a checksum).
_MAGIC = b"DUCK"


def check_catalog_file(path: Path) -> None:
    """Refuse a path that exists but is not a DuckDB file (a CSV passed as `--catalog`, a folder, ...)."""
    if not path.exists():
        return
    if not path.is_file():
        raise UserError(f"catalog path {path} is not a file; give the catalog's .duckdb file")
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head and head[8:12] != _MAGIC:
        raise UserError(f"{path} is not a dataforge catalog (not a DuckDB database file); "
                        "give the catalog's .duckdb file, or a new path to create one with `dataforge build`")


@contextlib.contextmanager
def connect(path: Path, *, read_only: bool, wait_s: float | None = None,
            allow_files: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the catalog, closed on exit. Waits up to `wait_s` for another process's lock.

    `allow_files=False` turns off DuckDB's external access (no `read_csv('/etc/passwd')`, no `glob`):
    what user-written SQL (`dataforge sql`, `source.sql`) runs on, unless the user opts in. The
    configuration is then locked too, so a query cannot `SET` it back on.
    """
    if wait_s is None:
        wait_s = 10.0 if read_only else 60.0
    check_catalog_file(Path(path))
    deadline = time.monotonic() + wait_s
    delay = 0.02
    with _lock:
        while True:
            try:
                if read_only:
                    con = duckdb.connect(str(path), read_only=True,
                                         config={} if allow_files else {"enable_external_access": False})
                else:
                    con = _writer(path, allow_files)
                break
            except duckdb.IOException as e:
                if not _is_lock_error(e):  # not a DuckDB file, no permission, ...: the user's to fix
                    raise UserError(f"cannot open catalog {path}: {str(e).splitlines()[0]}") from None
                if time.monotonic() >= deadline:
                    raise CatalogBusy(f"catalog {path} is locked by another process{_holder(e)} "
                                      f"and stayed locked for {wait_s:.0f}s; try again in a moment") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)
        try:
            if not read_only and _stores_zstd(con):
                # Text is stored zstd-compressed instead of by DuckDB's per-segment choice
                # (dictionary/FSST): a million-row ingest stores ~0.4-0.9 s faster for a ~35% larger
                # file; reads are as fast. Other types keep DuckDB's choice.
                con.execute("SET force_compression = 'zstd'")
            if not allow_files:
                con.execute("SET lock_configuration = true")
            yield con
        finally:
            con.close()


# Rows per row group in tables a write connection makes (DuckDB's default: 122,880). DuckDB stores
# an ordered bulk insert in parallel only for the reader's batches (a Parquet row group, a stretch
# of CSV or JSON) that fill a row group; smaller ones wait to be merged by one thread. Polars writes
# ~82k-row groups, the text readers' stretches hold ~15-60k rows: with 32,768 a million-row source
# stores ~0.3 s faster, for a ~15% larger catalog. The size is an ATTACH option, not kept in the file.
ROW_GROUP_ROWS = 32_768
WRITE_ALIAS = "dataforge_catalog"


def _writer(path: Path, allow_files: bool) -> duckdb.DuckDBPyConnection:
    """A read-write connection to the catalog file, attached with `ROW_GROUP_ROWS` (an `ATTACH` option
    only) and made the default database; external access off after that unless `allow_files`.
    Spilled data goes beside the file, as for `duckdb.connect(path)`."""
    config = {
        # Bulk stores flush each row group as it fills rather than five at a time: a million-row
        # source then stores in ~70 MiB less memory, no slower.
        "write_buffer_row_group_count": 1,
        # No checkpoint merges a table's part-filled row groups (each batch's last one): it would
        # rewrite every bulk-stored table once more, leaving the file ~2x its size. (Nor does it
        # compact groups that lost some rows to a delete; groups that lost all are freed.)
        "max_vacuum_tasks": 0,
        "temp_directory": f"{path}.tmp",
    }
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute(f"ATTACH {quote_literal(str(path))} AS {WRITE_ALIAS} (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        con.execute(f"USE {WRITE_ALIAS}")
        if not allow_files:
            con.execute("SET enable_external_access = false")
    except BaseException:
        con.close()
        raise
    return con


def _stores_zstd(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether this catalog file's storage version has zstd for text (v1.2 on). A file made by an
    older DuckDB keeps its version, and forcing zstd there would store text uncompressed instead."""
    tags = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    m = re.match(r"v(\d+)\.(\d+)", ((tags or [{}])[0] or {}).get("storage_version", ""))
    return m is not None and (int(m[1]), int(m[2])) >= (1, 2)


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """`begin` ... `commit`, or `rollback` when the block raises."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def is_interrupt(e: BaseException) -> bool:
    """True for Ctrl-C: a `KeyboardInterrupt`, or DuckDB's answer to it when it arrives mid-query
    (a `RuntimeError("Query interrupted")`, not a `duckdb.Error`)."""
    return isinstance(e, (KeyboardInterrupt, duckdb.InterruptException)) or (
        type(e) is RuntimeError and str(e) == "Query interrupted")


def is_file_access_error(e: Exception) -> bool:
    """True when DuckDB refused a query because external (file) access is off."""
    return isinstance(e, duckdb.PermissionException) or "disabled by configuration" in str(e)
