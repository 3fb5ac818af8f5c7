"""This process's in-memory DuckDB, for queries that need no catalog: row ids, checks of a source
file, SQL keywords. Opening a database costs ~20 ms; a cursor on this one almost nothing."""

from __future__ import annotations

import ctypes
import os
import threading

import duckdb

_memory: duckdb.DuckDBPyConnection | None = None
_memory_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child opens its own database on first use, and never frees the one it inherited:
    DuckDB's destructor waits for worker threads that exist only in the parent (it hangs, or aborts
    at exit). That reference is leaked on purpose."""
    global _memory, _memory_lock
    _memory_lock = threading.Lock()  # another thread may have held it at the fork
    if _memory is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_memory))
        _memory = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def cursor() -> duckdb.DuckDBPyConnection:
    """A new cursor (close it when done). Each call gets its own, so threads never share one; it may
    read files (the sources' fast paths read them)."""
    global _memory
    with _memory_lock:
        if _memory is None:
            _memory = duckdb.connect(config={"enable_external_access": True})
        return _memory.cursor()
