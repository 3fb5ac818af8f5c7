"""`dataforge ls / show / sql / history / validate / schema` as a user sees them."""

from __future__ import annotations

import csv
import io
import json
import textwrap

import pytest

import dataforge.cli as cli_module
from conftest import copy_catalog, run_dataforge
from dataforge import api


def flat(text: str) -> str:
    """CLI output with the usage-error box and line wrapping taken out."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


@pytest.fixture(scope="module")
def _built_once(tmp_path_factory):
    d = tmp_path_factory.mktemp("built")
    r = d / "r.yaml"
    r.write_text(textwrap.dedent("""
        name: greet
        vars: {limit: 3}
        steps:
          - id: src
            type: source.inline
            rows: [{text: hello, n: 1}, {text: "こんにちは 🙂", n: 2}, {text: "שלום", n: 3}]
            limit: ${limit}
        outputs:
          greetings: src
        """), encoding="utf-8")
    cat = d / "catalog.duckdb"
    first = api.build(r, catalog=cat, vars={"limit": 5}, quiet=True)
    api.build(r, catalog=cat, quiet=True)
    second = api.build(r, catalog=cat, quiet=True)
    return r, cat, first, second


@pytest.fixture
def built(_built_once, catalog, monkeypatch):
    """A catalog with `greetings` v1 and v2 (same rows, another `limit`), then a build that reuses v2
    (built once per module; each test gets its own copy)."""
    monkeypatch.setattr(cli_module.out, "width", 250)  # wide tables: no folded cells in assertions
    r, cat, first, second = _built_once
    return r, copy_catalog(cat, catalog), first, second


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


@pytest.mark.parametrize("args", [["ls"], ["history"], ["--version"]])
def test_the_curators_quick_commands_import_neither_the_build_nor_pyarrow(built, args):
    """`ls`, `history` and `--version` answer without importing recipes and the build (~0.25 s) or
    pyarrow (~0.2 s): what a curator types most often starts fast."""
    import os
    import subprocess
    import sys

    _, cat, *_ = built
    argv = args + (["--catalog", str(cat)] if args != ["--version"] else [])
    code = ("import sys\nfrom dataforge.cli import main\n"
            f"sys.argv = ['dataforge', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted({m for m in sys.modules if m.split('.')[0] == 'pyarrow' or m in "
            "('dataforge.build', 'dataforge.plan', 'dataforge.steps.base')}), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "DATAFORGE_EXECUTOR": "local"})
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert done.stdout.strip(), "the command printed nothing"


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
    assert res.exit_code == 2 and "'xml' is not one of 'table', 'vertical', 'csv', 'json', 'jsonl'" in flat(res.output)
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
    ("install httpfs", "INSTALL/LOAD"),
    ("load httpfs", "INSTALL/LOAD"),
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
    # one steps table per build, under its id: each step on one line
    head = {b: lines.index(f"steps of build {b}") for b in (first.build_id, second.build_id)}
    assert head[second.build_id] < head[first.build_id]  # newest first, as in the builds table
    titles = [i for i, ln in enumerate(lines) if ln.startswith("steps of build ")] + [len(lines)]

    def table(build_id):
        at = head[build_id]
        return lines[at + 1:titles[titles.index(at) + 1]]

    assert [ln for ln in table(first.build_id) if " src " in ln and " built " in ln]
    assert [ln for ln in table(second.build_id) if " src " in ln and " reused " in ln]
    assert not [ln for ln in table(second.build_id) if " built " in ln]


def test_a_cut_table_names_only_options_its_command_has(built, cli, monkeypatch):
    # `history` said "--columns A,B or --format vertical shows them whole", and had no --columns
    from rich.console import Console

    _, cat, first, _ = built
    buf = io.StringIO()
    monkeypatch.setattr(cli_module, "out", Console(file=buf, width=24, force_terminal=True, color_system=None,
                                                   soft_wrap=True))

    def hints(*args):
        buf.seek(0)
        buf.truncate()
        assert cli(*args, "--catalog", cat).exit_code == 0
        return [ln for ln in buf.getvalue().splitlines() if ln.startswith("columns cut to fit")]

    for cmd in (["history"], ["ls"], ["calls"]):
        found = hints(*cmd)
        assert found and all(h == "columns cut to fit; --format vertical shows them whole" for h in found), (cmd, found)
        assert cli(*cmd, "--catalog", cat, "--format", "vertical").exit_code == 0  # the option it names exists
    assert hints("show", "greetings") == ["columns cut to fit; --columns A,B or --format vertical shows them whole"]
    assert hints("sql", "select * from steps") == [
        "columns cut to fit; select fewer columns, or --format vertical shows them whole"]
    buf.seek(0)
    buf.truncate()
    assert cli("calls", "--catalog", cat, "--format", "json").exit_code == 0
    assert json.loads(buf.getvalue()) == []  # no LLM steps here


# -- a CLI that fits the terminal ------------------------------------------------------------

@pytest.fixture
def wide(write, catalog, monkeypatch):
    """A catalog with `wide`: 30 rows with a long text, a list, a struct, big numbers and a row of
    terminal escape sequences and rich markup."""
    monkeypatch.setattr(cli_module.out, "width", 250)
    rows = [{"text": f"row {i} " + "word " * 30, "n": 12_345 * i, "tags": ["a", f"t{i}"], "meta": {"k": i}}
            for i in range(29)]
    rows.append({"text": "evil \x1b[2J\x1b]0;pwned\x07 [bold red]x[/] end", "n": 1, "tags": [], "meta": {"k": -1}})
    write("wide.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    r = write("w.yaml", """
        name: wide
        steps:
          - id: src
            type: source.jsonl
            path: wide.jsonl
        outputs:
          wide: src
        """)
    api.build(r, catalog=catalog)
    return catalog, rows


def test_show_caps_rows_and_says_how_many_more(wide, cli):
    cat, rows = wide
    res = cli("show", "wide", "--catalog", cat)
    assert res.exit_code == 0
    assert sum(1 for ln in res.output.splitlines() if ln.startswith("│ ")) == 20
    assert "20 of 30 rows shown; --limit N or --all for more" in res.output
    res = cli("show", "wide", "--catalog", cat, "--limit", "3")
    assert sum(1 for ln in res.output.splitlines() if ln.startswith("│ ")) == 3 and "3 of 30 rows" in res.output
    res = cli("show", "wide", "--catalog", cat, "--all")
    assert sum(1 for ln in res.output.splitlines() if ln.startswith("│ ")) == 30 and "rows shown" not in res.output
    # machine formats print every row unless asked, and nothing but the rows
    assert len(json.loads(cli("show", "wide", "--catalog", cat, "--format", "json").stdout)) == 30
    assert len(cli("show", "wide", "--catalog", cat, "--format", "jsonl", "--limit", "4").stdout.splitlines()) == 4


@pytest.mark.parametrize("args, says", [
    (["--limit", "-1"], "Invalid value for '--limit'"),
    (["--format", "xml"], "'xml' is not one of 'table', 'vertical', 'csv', 'json', 'jsonl'"),
    (["--limit", "2", "--all"], "give --limit N or --all, not both"),
    (["--columns", "text,nope"], "--columns: 'nope' not in wide v1; its columns: id, text, n, tags, meta"),
    (["--columns", ","], "--columns: give column names"),
    (["--version", "7"], "no dataset 'wide' version 7 in the catalog; its versions: 1"),
])
def test_show_refuses_bad_flags_plainly(wide, cli, args, says):
    cat, _ = wide
    res = cli("show", "wide", "--catalog", cat, *args)
    assert res.exit_code == 2, res.output
    assert says in flat(res.output)
    assert "Traceback" not in res.output and "internal error" not in res.output and "Exception" not in res.output


def test_show_versions_lists_ranges(built, cli):
    _, cat, *_ = built
    res = cli("show", "greetings", "--catalog", cat, "--version", "5")
    assert res.exit_code == 2 and "its versions: 1-2" in res.output


def test_table_cells_are_escaped_truncated_and_numbers_grouped(wide, cli):
    cat, rows = wide
    res = cli("show", "wide", "--catalog", cat, "--all")
    out = res.output
    assert "\x1b" not in out and "\x07" not in out  # nothing reaches the terminal raw
    assert "evil \\x1b[2J\\x1b]0;pwned\\x07 [bold red]x[/] end" in out  # markup shown, not interpreted
    assert "345,660" in out  # 12,345 * 28 with a thousands separator
    assert '["a", "t3"]' in out and '{"k": 3}' in out  # nested values as JSON
    long = next(ln for ln in out.splitlines() if "row 3 " in ln)
    assert "…" in long and "word " * 30 not in long
    # the full, exact values in json / jsonl / csv
    js = json.loads(cli("show", "wide", "--catalog", cat, "--format", "json").stdout)
    assert [r["text"] for r in js] == [r["text"] for r in rows]
    jl = [json.loads(ln) for ln in cli("show", "wide", "--catalog", cat, "--format", "jsonl").stdout.splitlines()]
    assert [r["tags"] for r in jl] == [r["tags"] for r in rows] and jl[-1]["meta"] == {"k": -1}
    got = list(csv.DictReader(io.StringIO(cli("show", "wide", "--catalog", cat, "--format", "csv").stdout)))
    assert [r["text"] for r in got] == [r["text"] for r in rows]
    assert [json.loads(r["tags"]) for r in got] == [r["tags"] for r in rows]  # lists as JSON text
    assert json.loads(got[3]["meta"]) == {"k": 3}
    # a wider limit on request; 0 is no limit
    assert "word " * 30 in cli("show", "wide", "--catalog", cat, "--limit", "5", "--max-width", "0").output


def test_sql_output_is_escaped_too(wide, cli):
    cat, _ = wide
    res = cli("sql", "select text from wide where n = 1 and text like 'evil%'", "--catalog", cat)
    assert res.exit_code == 0 and "\x1b" not in res.output and "\\x1b[2J" in res.output
    res = cli("sql", "select chr(27) || '[31m' as \"col\x1b\"", "--catalog", cat, "--format", "json")
    assert json.loads(res.stdout) == [{"col\x1b": "\x1b[31m"}]  # json stays exact


def test_vertical_view_and_columns(wide, cli):
    cat, rows = wide
    res = cli("show", "wide", "--catalog", cat, "--format", "vertical", "--columns", "n,text", "--limit", "2")
    assert res.exit_code == 0
    out = res.output
    assert "row 1" in out and "row 2" in out and "row 3" not in out and "2 of 30 rows shown" in out
    assert rows[1]["text"].strip() in " ".join(out.split())  # full value, wrapped, not cut
    names = [ln.split()[0] for ln in out.splitlines() if ln[:1].isalpha() and not ln.startswith(("row", "wide"))]
    assert names[:2] == ["n", "text"] and "tags" not in out  # only the asked columns, in order
    res = cli("show", "wide", "--catalog", cat, "--format", "jsonl", "--columns", "n", "--limit", "2")
    assert [json.loads(ln) for ln in res.stdout.splitlines()] == [{"n": 0}, {"n": 12_345}]


def test_sql_caps_rows_and_runs_one_statement(built, cli):
    _, cat, *_ = built
    res = cli("sql", "select range as i from range(120)", "--catalog", cat)
    assert res.exit_code == 0 and "50 of 120 rows shown; --limit N or --all for more" in res.output
    res = cli("sql", "select range as i from range(120) order by i desc", "--catalog", cat, "--limit", "2")
    assert "│ 119 │" in res.output and "│ 118 │" in res.output and "2 of 120 rows" in res.output
    assert len(json.loads(cli("sql", "select * from range(120)", "--catalog", cat, "--format", "json").stdout)) == 120
    res = cli("sql", "select 1; select 2", "--catalog", cat)
    assert res.exit_code == 2
    assert "one SQL statement at a time: this query has 2 (separated by `;`)" in res.output


def test_sql_cannot_read_files_unless_allowed(built, cli, tmp_path):
    _, cat, *_ = built
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    for q in (f"select * from read_csv('{secret}')", f"select * from '{secret}'", "select * from glob('/root/*')",
              "select * from read_text('/etc/passwd')", f"attach '{tmp_path / 'x.duckdb'}' as x"):
        res = cli("sql", q, "--catalog", cat)
        assert res.exit_code == 2, (q, res.output)
        assert "Traceback" not in res.output and "1,2" not in res.output
    res = cli("sql", f"select * from read_csv('{secret}')", "--catalog", cat)
    assert "reading files is turned off" in res.output and "--allow-files" in res.output
    res = cli("sql", "set enable_external_access = true", "--catalog", cat)
    assert res.exit_code == 2
    # the catalog itself stays readable: datasets' views, build tables, joins of both
    res = cli("sql", "select g.text, s.status from greetings g, (select distinct status from steps) s "
                     "order by g.n, s.status", "--catalog", cat, "--format", "json")
    assert res.exit_code == 0 and {r["text"] for r in json.loads(res.stdout)} == {"hello", "こんにちは 🙂", "שלום"}
    res = cli("sql", f"select * from read_csv('{secret}')", "--catalog", cat, "--allow-files", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout) == [{"a": 1, "b": 2}]


def test_a_file_that_is_not_a_catalog(tmp_path, cli):
    text = tmp_path / "data.csv"
    text.write_text("a,b\n1,2\n")
    for cmd in (["ls"], ["sql", "select 1"], ["show", "x"], ["history"]):
        res = cli(*cmd, "--catalog", text)
        assert res.exit_code == 2, res.output
        assert f"{text} is not a dataforge catalog (not a DuckDB database file)" in flat(res.output)
    import duckdb

    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("create table t (a int)").close()
    res = cli("ls", "--catalog", other)
    assert res.exit_code == 2 and "is a DuckDB database but not a dataforge catalog" in flat(res.output)
    assert text.read_text() == "a,b\n1,2\n"


def test_build_refuses_a_duckdb_database_that_is_not_a_catalog(tmp_path, write, cli):
    # Someone else's database: a build must not add dataforge's tables to it (nor fail on a `builds` of theirs).
    import duckdb

    from dataforge.hashing import file_sha256

    recipe = write("r.yaml", "name: r\nsteps:\n  - id: s\n    type: source.inline\n    rows: [{a: 1}]\n"
                             "outputs:\n  o: s\n")
    for table in ("t", "builds"):
        other = tmp_path / f"other_{table}.duckdb"
        duckdb.connect(str(other)).execute(f"create table {table} (a int)").close()
        before = file_sha256(other)
        res = cli("build", recipe, "--catalog", other)
        assert res.exit_code == 2 and "is a DuckDB database but not a dataforge catalog" in flat(res.output)
        assert file_sha256(other) == before
    blank = tmp_path / "blank.duckdb"  # a database with nothing in it becomes a catalog
    duckdb.connect(str(blank)).close()
    assert cli("build", recipe, "--catalog", blank).exit_code == 0


def test_history_of_one_build_or_one_recipe(built, write, cli):
    _, cat, first, second = built
    other = write("o.yaml", "name: other\nsteps:\n  - id: s\n    type: source.inline\n    rows: [{a: 1}]\n"
                            "outputs:\n  o: s\n")
    third = api.build(other, catalog=cat)
    res = cli("history", "--catalog", cat, "--build", first.build_id)
    assert res.exit_code == 0
    assert first.build_id in res.output and second.build_id not in res.output and third.build_id not in res.output
    res = cli("history", "--catalog", cat, "--recipe", "greet")
    assert first.build_id in res.output and second.build_id in res.output and third.build_id not in res.output
    res = cli("history", "--catalog", cat, "--recipe", "nope")
    assert res.exit_code == 2 and "no builds for recipe 'nope'" in res.output and "greet, other" in res.output
    res = cli("history", "--catalog", cat, "--format", "jsonl", "--build", third.build_id)
    assert [json.loads(ln)["build_id"] for ln in res.stdout.splitlines()] == [third.build_id, third.build_id]
    # json is one document (it was two arrays back to back, which json.loads refuses)
    doc = json.loads(cli("history", "--catalog", cat, "--format", "json", "--build", third.build_id).stdout)
    assert [r["build_id"] for r in doc["builds"]] == [third.build_id] and doc["steps"][0]["step_id"] == "s"
    csv = cli("history", "--catalog", cat, "--format", "csv", "--build", third.build_id).stdout
    assert csv.split("\n\n")[1].startswith("build_id,step_id,")


def test_version_and_help_name_types_in_words(cli):
    from dataforge import __version__

    res = cli("--version")
    assert res.exit_code == 0 and res.output.strip() == f"dataforge {__version__}"
    for cmd in ("build", "validate", "ls", "show", "sql", "history", "calls", "export", "report", "schema"):
        text = cli(cmd, "--help").output
        assert not any(t in text for t in ("<list[str]>", "<bool>", "<path>", "<int>", "<str>", "<text>")), \
            (cmd, text)
    text = flat(cli("build", "--help").output)
    assert "--var NAME=VALUE" in text and "--only STEP" in text and "--catalog FILE" in text
    text = "".join(flat(cli("sql", "--help").output).split())  # table names may wrap mid-word
    assert all(t in text for t in ("llm_batches", "runs", "run_losses", "step_outputs")), text


def test_report_out_must_be_a_folder_it_may_replace(built, cli, tmp_path):
    _, cat, *_ = built
    f = tmp_path / "report.html"
    f.write_text("mine")
    res = cli("report", "greetings", "--out", f, "--catalog", cat)
    assert res.exit_code == 2 and "exists and is not a directory" in flat(res.output)
    mine = tmp_path / "site"
    mine.mkdir()
    (mine / "index.html").write_text("my page")
    res = cli("report", "greetings", "--out", mine, "--catalog", cat)
    assert res.exit_code == 2 and "non-empty directory without report.json" in flat(res.output)
    assert (mine / "index.html").read_text() == "my page" and f.read_text() == "mine"
    new = tmp_path / "rep"
    assert cli("report", "greetings", "--out", new, "--catalog", cat).exit_code == 0
    assert cli("report", "greetings", "--out", new, "--catalog", cat).exit_code == 0  # an earlier report: replaced
    assert sorted(p.name for p in new.iterdir()) == ["index.html", "report.json", "verb_noun_sunburst.png"]


def test_a_wide_table_fits_the_terminal_one_line_per_row():
    import polars as pl
    from rich.console import Console

    from dataforge import display

    buf = io.StringIO()
    term = Console(file=buf, width=80, force_terminal=True, color_system=None)
    df = pl.DataFrame({f"column_{i}": [f"value {i} " * 8, "short"] for i in range(9)})
    display.print_frame(df, "table", term, total=5)
    lines = buf.getvalue().splitlines()
    assert all(len(ln) <= 80 for ln in lines), lines
    assert sum(1 for ln in lines if ln.startswith("│")) == 2  # each row on one line
    assert "--format vertical shows them whole" in buf.getvalue() and "2 of 5 rows shown" in buf.getvalue()


def test_a_narrow_terminal_keeps_the_key_column_whole_and_cuts_number_headers_first():
    import polars as pl
    from rich.console import Console

    from dataforge import display

    def shown(df):
        buf = io.StringIO()
        display.print_frame(df, "table", Console(file=buf, width=80, force_terminal=True, color_system=None))
        return buf.getvalue()

    # `ls` of long dataset names: the names stay whole (a long header over a one-digit number
    # gives way first); before, every name was cut to "symbol…"
    names = ["symbol_eval_labels_instruction", "symbol_eval_symbols_instruction", "symbol_tuning_train"]
    ls = pl.DataFrame({"name": names, "latest_version": [1, 1, 1], "versions": [1, 1, 1],
                       "rows": [2000, 2000, 6000], "step_id": [n.replace("symbol_", "") for n in names],
                       "build_id": ["20261202-082028-a80bbc"] * 3, "created_at": ["2026-12-02 08:20:31"] * 3})
    out = shown(ls)
    assert all(n in out for n in names) and "2,000" in out and "6,000" in out
    assert all(len(ln) <= 80 for ln in out.splitlines())
    # a first column that repeats (history's build_id) is no key: it shares the room like the rest
    steps = pl.DataFrame({"build_id": ["20261202-082028-a80bbc"] * 2, "step_id": ["eval_symbols", "train_prompts"],
                          "type": ["transform.symbols"] * 2, "status": ["built"] * 2, "rows_in": [10662, 22372],
                          "rows_out": [2000, 6000], "rejected": [8662, 16372], "seconds": [0.435, 0.886]})
    out = shown(steps)
    assert "20261202-082028-a80bbc" not in out and "0.886" in out and "16,372" in out
    # number headers cut to fit are cut in the middle: `rows_in` and `rows_out` both read `rows_…`
    wide_names = pl.DataFrame({"step_id": ["eval_symbols_no_instruction"], "type": ["transform.symbol_prompts"],
                               "status": ["built"], "rows_in": [10662], "rows_out": [2000], "rejected": [8662],
                               "seconds": [0.507]})
    buf = io.StringIO()
    display.print_frame(wide_names, "table", Console(file=buf, width=70, force_terminal=True, color_system=None))
    header = next(ln for ln in buf.getvalue().splitlines() if ln.startswith("┃"))
    names = [h.strip() for h in header.strip("┃").split("┃")]
    assert len(set(names)) == len(names) and not any(n.startswith("rows_…") for n in names), names


def test_sql_unknown_table_hints_name_only_the_catalogs_own_tables(built, cli):
    # DuckDB guesses among its own catalog too (`Did you mean "lineage or pg_enum"?`): the hint names
    # only what this catalog holds, a close match or else the tables and datasets there are.
    _, cat, *_ = built
    res = cli("sql", "select * from nope", "--catalog", cat)
    assert res.exit_code == 2
    text = flat(res.output)
    assert "Table with name nope does not exist" in text
    assert "The catalog's tables: builds, datasets, lineage," in text and "its datasets: greetings" in text
    assert not any(x in text for x in ("pg_", "duckdb_", "information_schema", "sqlite_", "_migrations", "_s_"))
    res = cli("sql", "select * from greetingz", "--catalog", cat)
    assert res.exit_code == 2 and 'Did you mean "greetings"?' in res.output
    res = cli("sql", "select * from pg_tyep", "--catalog", cat)
    assert res.exit_code == 2 and "pg_type" not in res.output and "The catalog's tables:" in res.output


def test_an_empty_dataset_says_it_has_no_rows(write, catalog, cli, monkeypatch):
    monkeypatch.setattr(cli_module.out, "width", 250)
    r = write("e.yaml", """
        name: e
        steps:
          - id: src
            type: source.inline
            rows: [{text: hello, n: 1}]
          - id: none
            type: transform.sql
            from: src
            query: "select * from src where n > 100"
        outputs:
          empty: none
        """)
    api.build(r, catalog=catalog, quiet=True)
    res = cli("show", "empty", "--catalog", catalog, "--format", "vertical")
    assert res.exit_code == 0
    assert res.output.splitlines() == ["empty v1", "columns: id, text, n", "0 rows"]
    res = cli("show", "empty", "--catalog", catalog)
    assert res.exit_code == 0 and "┃ id ┃ text ┃ n ┃" in res.output and res.output.splitlines()[-1] == "0 rows"
    res = cli("sql", "select * from empty", "--catalog", catalog, "--format", "vertical")
    assert res.output.splitlines() == ["columns: id, text, n", "0 rows"]
    # the machine formats stay exactly the (no) rows
    assert cli("show", "empty", "--catalog", catalog, "--format", "json").stdout == "[]\n"
    assert cli("show", "empty", "--catalog", catalog, "--format", "csv").stdout == "id,text,n\n"


def test_numbers_are_never_cut_on_a_narrow_terminal(wide, cli):
    import polars as pl
    from rich.console import Console

    from dataforge import display

    def shown(df, width):
        buf = io.StringIO()
        display.print_frame(df, "table", Console(file=buf, width=width, force_terminal=True, color_system=None,
                                                 soft_wrap=True))
        return buf.getvalue()

    # history's steps at 60 columns: text columns give way, `seconds` keeps 0.128 whole (not `0.1…`)
    steps = pl.DataFrame({"build_id": ["20261201-232659-d2343a"] * 2, "step_id": ["src", "none"],
                          "type": ["source.inline", "transform.sql"], "status": ["built"] * 2,
                          "rows_in": [0, 2], "rows_out": [2, 0], "rejected": [0, 0], "seconds": [0.128, 0.083]})
    out = shown(steps, 60)
    assert "0.128" in out and "0.083" in out and "columns cut to fit" in out
    assert all(len(ln) <= 60 for ln in out.splitlines() if ln.startswith(("┃", "│")))
    # numbers that cannot fit at all are still printed whole; the row runs past the terminal
    big = pl.DataFrame({"text": ["a long text value " * 3], "x": [1_234_567_890_123.5], "n": [10**12]})
    out = shown(big, 30)
    assert "1,234,567,890,123.5" in out and "1,000,000,000,000" in out
    # --max-width cuts text, never numbers
    cat, _ = wide
    res = cli("show", "wide", "--catalog", cat, "--columns", "n,text", "--max-width", "3", "--all")
    assert "345,660" in res.output and "ro…" in res.output


def _build_pcs(write, catalog) -> None:
    """Build dataset `pcs`: two prompt/completion rows."""
    r = write("pc.yaml", """
        name: pc
        steps:
          - id: src
            type: source.inline
            rows: [{prompt: hello, completion: a}, {prompt: world, completion: b}]
        outputs:
          pcs: src
        """)
    api.build(r, catalog=catalog, quiet=True)


def test_an_empty_out_is_refused_not_read_as_the_current_folder(write, catalog, cli, tmp_path, monkeypatch):
    _build_pcs(write, catalog)
    mix = write("mix.yaml", "name: m\nseed: 1\nsources:\n  - dataset: pcs\n")
    here = tmp_path / "here"  # an empty current folder: `--out ""` read as `.` would be replaced
    here.mkdir()
    monkeypatch.chdir(here)
    for value in ("", "  "):
        res = cli("export", mix, "--out", value, "--catalog", catalog)
        assert res.exit_code == 2, res.output
        assert "--out is empty; give a directory for the export" in res.output
        res = cli("report", "pcs", "--out", value, "--catalog", catalog)
        assert res.exit_code == 2 and "--out is empty; give a directory for the report" in res.output
    for value in (".", "..", str(here)):  # the folder you are in, or one holding it, would go from under you
        res = cli("export", mix, "--out", value, "--catalog", catalog)
        assert res.exit_code == 2 and "is the folder you are in" in res.output, res.output
        res = cli("report", "pcs", "--out", value, "--catalog", catalog)
        assert res.exit_code == 2 and "is the folder you are in" in res.output, res.output
    assert list(here.iterdir()) == [] and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert cli("export", mix, "--out", here / "out", "--catalog", catalog).exit_code == 0


def test_every_out_option_refuses_an_empty_value_or_a_folder_for_a_file_before_any_work(cli, catalog, tmp_path,
                                                                                       monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    (here / "results").mkdir()
    cases = [
        (["train", "cfg.yaml", "--out", ""], "--out is empty; give a directory for the training run"),
        (["rank", "train", "graded", "--out", ""], "--out is empty; give a directory for the ranker"),
        (["eval", "qs", "--out", ""], "--out is empty; give the path of a file for the eval result"),
        (["eval-classification", "qs", "--out", " "], "--out is empty; give the path of a file for the eval result"),
        (["schema", "--out", ""], "--out is empty; give the path of a file for the JSON Schema"),
        # a folder where the JSON goes would only fail once every sample had been drawn
        (["eval", "qs", "--out", "results"], "--out results is a directory; give the path of a file"),
        (["eval-classification", "qs", "--out", "results"], "--out results is a directory"),
    ]
    for args, message in cases:
        res = cli(*args, "--catalog", catalog) if args[0] != "schema" else cli(*args)
        assert res.exit_code == 2, (args, res.output)
        assert message in " ".join(res.output.split()), (args, res.output)
    assert sorted(p.name for p in here.iterdir()) == ["results"] and not list((here / "results").iterdir())


def test_schema_names_the_flag_it_refuses_and_suggests_a_file_of_its_kind(cli, tmp_path, monkeypatch):
    # --reference went through the --out check: its errors named --out, and a folder got a `.json` suggestion
    # for the Markdown reference.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "schemas").mkdir()
    cases = [
        (["--reference", ""], "--reference is empty; give the path of a file for the recipe reference"),
        (["--reference", "docs"], "--reference docs is a directory; give the path of a file for the recipe "
                                  "reference, e.g. --reference docs/recipe-reference.md"),
        (["--out", "schemas"], "--out schemas is a directory; give the path of a file for the JSON Schema, "
                               "e.g. --out schemas/recipe.schema.json"),
    ]
    for args, message in cases:
        res = cli("schema", *args)
        assert res.exit_code == 2, (args, res.output)
        assert message in " ".join(res.output.split()), (args, res.output)
    assert not list((tmp_path / "docs").iterdir()) and not list((tmp_path / "schemas").iterdir())


def test_the_api_refuses_a_negative_limit_as_the_cli_does(built):
    from dataforge.errors import UserError

    _, cat, _, _ = built
    calls = [lambda n: api.show("greetings", limit=n, catalog=cat),
             lambda n: api.sql_page("select 1", limit=n, catalog=cat),
             lambda n: api.history(limit=n, catalog=cat),
             lambda n: api.runs(limit=n, catalog=cat)]
    for call in calls:
        with pytest.raises(UserError, match="limit must be an integer of at least"):
            call(-1)
    assert api.show("greetings", limit=0, catalog=cat).height == 0 and api.history(limit=1, catalog=cat)[0].height == 1


def test_a_write_the_machine_refuses_is_a_user_error_that_keeps_what_was_there(write, catalog, cli, tmp_path):
    """A full disk or a file size limit (`ulimit -f`; Python ignores SIGXFSZ, so writes fail with
    EFBIG) is the user's to fix: exit 2 naming the file, not an internal error; the catalog's
    datasets and an earlier export stay as they were."""
    import resource

    _build_pcs(write, catalog)
    kept = api.read("pcs", catalog=catalog)
    write("big.jsonl", "".join(f'{{"prompt": "task {i} {"x" * 90}", "completion": "c"}}\n' for i in range(60_000)))
    big = write("big.yaml", "name: big\nsteps: [{id: s, type: source.jsonl, path: big.jsonl, "
                            "columns: [prompt, completion]}]\noutputs: {bigs: s}\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (catalog.stat().st_size + 2**20, hard))
    try:
        res = cli("build", big, "--catalog", catalog, "-q")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert res.exit_code == 2, res.output
    assert f"error: {catalog.resolve()}" in res.output and ": File too large: a file size limit" in res.output
    assert "internal error" not in res.output
    assert api.read("pcs", catalog=catalog).equals(kept) and list(api.datasets(catalog=catalog)["name"]) == ["pcs"]
    assert api.build(big, catalog=catalog, quiet=True).rows == {"bigs": 60_000}

    out = tmp_path / "out"
    small_mix = write("small.yaml", "name: m\nseed: 1\nsources:\n  - dataset: pcs\n")
    api.export(small_mix, out=out, catalog=catalog)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, hard))
    try:
        res = cli("export", write("big_mix.yaml", "name: m\nseed: 1\nsources:\n  - dataset: bigs\n"),
                  "--out", out, "--catalog", catalog)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert res.exit_code == 2, res.output
    assert f"--out {out}: cannot write the export there (File too large" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_output_into_a_pipe_closed_early_ends_quietly(write, catalog):
    # `dataforge show big --format jsonl | head -1` printed "internal error: BrokenPipeError" and exited 1.
    import subprocess
    import sys

    rows = ", ".join(f"{{text: row {i} {'x' * 200}}}" for i in range(3000))
    r = write("r.yaml", f"name: p\nsteps:\n  - {{id: s, type: source.inline, rows: [{rows}]}}\noutputs: {{big: s}}\n")
    api.build(r, catalog=catalog, quiet=True)
    for args in (["show", "big", "--all", "--format", "jsonl"], ["sql", "select * from big", "--format", "json"]):
        proc = subprocess.Popen([sys.executable, "-m", "dataforge.cli", *args, "--catalog", str(catalog)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline()  # one line, then the reader goes away
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0, args
        assert proc.stderr.read() == b"", args
