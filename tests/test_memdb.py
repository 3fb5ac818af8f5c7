"""The process-wide in-memory DuckDB (`dataforge.memdb`) across threads and forks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from dataforge import memdb

# Run in a fresh interpreter: the children exit as scripts do (sys.exit, interpreter shutdown and
# DuckDB's destructors), which a child forked inside a pytest worker cannot.
FORKS = textwrap.dedent("""
    import faulthandler, os, sys
    from dataforge import memdb

    con = memdb.cursor()
    assert con.execute("select count(*) from range(5000000)").fetchone()[0] == 5_000_000
    con.close()

    def fork(child):
        pid = os.fork()
        if pid == 0:
            faulthandler.dump_traceback_later(30, exit=True)
            child()
            sys.exit(0)
        return os.waitpid(pid, 0)[1]

    def uses_it():
        c = memdb.cursor()
        assert c.execute("select 42").fetchone()[0] == 42
        c.close()

    print(fork(uses_it), fork(lambda: None))
    parent = memdb.cursor()
    print(parent.execute("select 1").fetchone()[0])
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_queries_and_exits_cleanly_after_the_parent_used_it():
    """A child forked after the parent ran queries gets a working database of its own, and exits
    without hanging or aborting in DuckDB's destructor (which waits for the parent's threads); so
    does a child that never touches it, and the parent's database still works."""
    out = subprocess.run([sys.executable, "-c", FORKS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0", "1"], (out.stdout, out.stderr)


def test_threads_each_get_their_own_cursor():
    """Cursors are per call: views registered on one are not seen by another."""
    seen: list[int] = []

    def work(i: int) -> None:
        c = memdb.cursor()
        c.execute(f"create temp view v as select {i} as x")
        seen.append(c.execute("select x from v").fetchone()[0])
        c.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(8))
