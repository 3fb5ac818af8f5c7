"""Shared fixtures: tiny recipes written to tmp dirs, a per-test catalog, a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataforge import api
from dataforge.cli import app

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """Path of a fresh catalog file for this test."""
    return tmp_path / "catalog" / "test.duckdb"


@pytest.fixture
def write(tmp_path: Path):
    """write("name.yaml", text) -> Path: dedented text in the test's tmp dir."""

    def _write(name: str, text: str | bytes) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return p

    return _write


@pytest.fixture
def cli():
    """cli("build", path, "--catalog", cat) -> Result with exit_code and output."""
    runner = CliRunner()

    def _cli(*args: str | Path):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return _cli


def run_dataforge(*args: str | Path, cwd: Path | None = None, env: dict | None = None,
                  timeout: float = 600) -> subprocess.CompletedProcess:
    """The real console script in a subprocess (for exit codes, signals, concurrency)."""
    return subprocess.run([sys.executable, "-m", "dataforge.cli", *map(str, args)], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def paid_calls(cat: Path) -> int:
    """Distinct requests answered so far in `cat`, read while another process may be building into it
    (0 while that build holds the file's lock or has not created it yet)."""
    import duckdb

    try:
        con = duckdb.connect(str(cat), read_only=True)
    except duckdb.Error:
        return 0
    try:
        return con.execute("select count(distinct request_hash) from llm_calls where status = 'ok'").fetchone()[0]
    except duckdb.Error:
        return 0
    finally:
        con.close()


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test with a clear reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (../shared/data is not beside this checkout)")
    return p


@pytest.fixture(scope="session")
def _quickstart_built(tmp_path_factory):
    cat = tmp_path_factory.mktemp("quickstart") / "catalog.duckdb"
    return cat, api.build(REPO / "recipes" / "quickstart.yaml", catalog=cat, quiet=True)


@pytest.fixture
def quickstart(_quickstart_built, tmp_path: Path):
    """(catalog, BuildResult): a catalog holding one build of `recipes/quickstart.yaml`, this test's own
    copy. The build (bundled model, offline) runs once per test process; mark a user of this fixture
    `@pytest.mark.xdist_group("quickstart")` so one worker runs them all and builds it once."""
    cat, res = _quickstart_built
    mine = tmp_path / "quickstart" / "catalog.duckdb"
    copy_catalog(cat, mine)
    return mine, res


def copy_catalog(src: Path, dst: Path) -> Path:
    """Copy a catalog no process has open (and whatever DuckDB keeps beside it) to `dst`: a test's own
    copy of a catalog that a module- or session-scoped fixture built once."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    for f in src.parent.iterdir():
        if f.name.startswith(src.name):
            shutil.copyfile(f, dst.parent / f.name.replace(src.name, dst.name))
    return dst
