"""This process's in-memory DuckDB, for queries that need no catalog: row ids, checks of a source
file, SQL keywords. Opening a database costs ~20 ms; a cursor on this one almost nothing."""

from __future__ import annotations

import os
import threading

import duckdb

_memory: tuple[int, duckdb.DuckDBPyConnection] | None = None
_memory_lock = threading.Lock()


def cursor() -> duckdb.DuckDBPyConnection:
    """A new cursor (close it when done). Each call gets its own, so threads never share one; it may
    read files (the sources' fast paths read them)."""
    global _memory
    with _memory_lock:
        if _memory is None or _memory[0] != os.getpid():  # not inherited across a fork
            _memory = (os.getpid(), duckdb.connect(config={"enable_external_access": True}))
        return _memory[1].cursor()
