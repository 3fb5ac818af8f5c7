"""`dataforge ls / show / sql / history / validate / schema` as a user sees them."""

from __future__ import annotations

import csv
import io
import json

import pytest

import dataforge.cli as cli_module
from conftest import run_dataforge
from dataforge import api


@pytest.fixture
def built(write, catalog, monkeypatch):
    """A catalog with `greetings` v1 and v2 (same rows, another `limit`), then a build that reuses v2."""
    monkeypatch.setattr(cli_module.out, "width", 250)  # wide tables: no folded cells in assertions
    r = write("r.yaml", """
        name: greet
        vars: {limit: 3}
        steps:
          - id: src
            type: source.inline
            rows: [{text: hello, n: 1}, {text: "こんにちは 🙂", n: 2}, {text: "שלום", n: 3}]
            limit: ${limit}
        outputs:
          greetings: src
        """)
    first = api.build(r, catalog=catalog, vars={"limit": 5})
    api.build(r, catalog=catalog)
    second = api.build(r, catalog=catalog)
    return r, catalog, first, second


def test_build_output_says_what_it_made_and_what_it_reused(write, catalog, cli):
    r = write("r.yaml", """
        name: greet
        steps:
          - id: src
            type: source.inline
            rows: [{text: hello}]
        outputs:
          greetings: src
        """)
    res = cli("build", r, "--catalog", catalog)
    assert res.exit_code == 0
    assert "src" in res.output and "built" in res.output
    assert "1 step(s) built, 0 reused" in res.output and "dataset greetings v1: 1 rows" in res.output
    res = cli("build", r, "--catalog", catalog)
    assert "reused" in res.output and "0 step(s) built, 1 reused" in res.output
    assert "dataset greetings v1: 1 rows (unchanged, no new version)" in res.output


def test_ls(built, cli):
    _, cat, *_ = built
    res = cli("ls", "--catalog", cat)
    assert res.exit_code == 0
    line = next(ln for ln in res.output.splitlines() if "greetings" in ln)
    assert " 2 " in line and " 3 " in line  # latest version 2, 3 rows


def test_show_versions_limit_and_formats(built, cli):
    _, cat, first, _ = built
    res = cli("show", "greetings", "--catalog", cat, "--format", "json", "--limit", "2")
    rows = json.loads(res.output)
    assert [r["text"] for r in rows] == ["hello", "こんにちは 🙂"]
    res = cli("show", "greetings", "--catalog", cat, "--version", "1", "--format", "csv")
    assert [r["text"] for r in csv.DictReader(io.StringIO(res.output))] == ["hello", "こんにちは 🙂", "שלום"]
    res = cli("show", "greetings", "--catalog", cat)
    assert res.exit_code == 0 and "שלום" in res.output
    res = cli("show", "greetings", "--catalog", cat, "--version", "9")
    assert res.exit_code == 2 and "no dataset 'greetings' version 9" in res.output
    res = cli("show", "nope", "--catalog", cat)
    assert res.exit_code == 2 and "datasets: greetings" in res.output


def test_sql_formats(built, cli):
    _, cat, *_ = built
    q = "select n, text from greetings order by n"
    res = cli("sql", q, "--catalog", cat, "--format", "json")
    assert json.loads(res.output) == [{"n": 1, "text": "hello"}, {"n": 2, "text": "こんにちは 🙂"},
                                      {"n": 3, "text": "שלום"}]
    res = cli("sql", q, "--catalog", cat, "--format", "csv")
    assert res.output.splitlines() == ["n,text", "1,hello", "2,こんにちは 🙂", "3,שלום"]
    res = cli("sql", q, "--catalog", cat)
    assert res.exit_code == 0 and "こんにちは 🙂" in res.output
    res = cli("sql", q, "--catalog", cat, "--format", "xml")
    assert res.exit_code == 2 and "choose table, csv or json" in res.output
    res = cli("sql", "select * from nope", "--catalog", cat)
    assert res.exit_code == 2 and "SQL error" in res.output and "Traceback" not in res.output
    res = cli("sql", "selec 1", "--catalog", cat)
    assert res.exit_code == 2 and "Traceback" not in res.output


@pytest.mark.parametrize("statement, kind", [
    ("insert into builds (build_id) values ('x')", "INSERT"),
    ("update builds set status = 'ok'", "UPDATE"),
    ("delete from datasets", "DELETE"),
    ("create table t as select 1", "CREATE"),
    ("drop view greetings", "DROP"),
    ("attach 'other.duckdb' as o", "ATTACH"),
    ("copy builds to 'out.csv'", "COPY"),
    ("install httpfs", "LOAD"),
    ("load httpfs", "LOAD"),
    ("export database 'dump'", "EXPORT"),
    ("select 1; delete from builds", "DELETE"),
])
def test_sql_is_read_only(built, cli, statement, kind, tmp_path, monkeypatch):
    _, cat, *_ = built
    monkeypatch.chdir(tmp_path)
    before = api.sql("select * from builds order by build_id", catalog=cat)
    res = cli("sql", statement, "--catalog", cat)
    assert res.exit_code == 2
    assert f"read-only: {kind} statements are refused" in res.output
    assert api.sql("select * from builds order by build_id", catalog=cat).equals(before)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "dump").exists()


def test_history_shows_builds_and_per_step_rows(built, cli):
    _, cat, first, second = built
    res = cli("history", "--catalog", cat)
    assert res.exit_code == 0
    out = res.output
    assert first.build_id in out and second.build_id in out
    step_lines = [ln for ln in out.splitlines() if " src " in ln]
    assert any(" built " in ln and " 3 " in ln for ln in step_lines)
    assert any(" reused " in ln and " 3 " in ln for ln in step_lines)
    assert out.count(" ok ") >= 2


def test_no_catalog_yet(tmp_path, cli):
    res = cli("ls", "--catalog", tmp_path / "none.duckdb")
    assert res.exit_code == 2 and "no catalog at" in res.output and "dataforge build" in res.output
    assert not (tmp_path / "none.duckdb").exists()


def test_validate_ok(write, cli, catalog):
    r = write("r.yaml", "name: v\nsteps:\n  - id: s\n    type: source.inline\n    rows: [{a: 1}]\noutputs:\n  o: s\n")
    res = cli("validate", r, "--catalog", catalog)
    assert res.exit_code == 0 and "ok (1 steps, outputs: o)" in res.output
    assert not catalog.exists()


def test_missing_recipe_file(tmp_path, cli):
    res = cli("build", tmp_path / "nope.yaml", "--catalog", tmp_path / "c.duckdb")
    assert res.exit_code == 2 and "nope.yaml: recipe file not found" in res.output


def test_piped_tables_are_not_folded(built):
    _, cat, first, second = built
    proc = run_dataforge("history", "--catalog", cat, env={"COLUMNS": "60"})
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert any(first.build_id in ln and " src " in ln and " built " in ln for ln in lines)
    assert any(second.build_id in ln and " reused " in ln for ln in lines)
