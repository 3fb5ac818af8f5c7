"""Shared fixtures: tiny recipes written to tmp dirs, a per-test catalog, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

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


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test with a clear reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (../shared/data is not beside this checkout)")
    return p
