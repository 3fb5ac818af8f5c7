"""Every recipe under tests/malformed/ fails with `file:line:col: key.path: message`, exit code 2,
no traceback, and leaves the catalog's existing datasets exactly as they were.

Each file's header says what to expect: `# expect: LINE:COL | key.path | message fragment`.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import spine_kinds  # noqa: F401  (registers test.* step kinds used by some cases)
from conftest import run_dataforge
from dataforge.hashing import file_sha256
from dataforge import api
from dataforge.cli import app

HERE = Path(__file__).parent / "malformed"
CASES = sorted(HERE.glob("*.yaml"))
# A few cases also run through the real console script, for exit codes and stderr as users see them.
SUBPROCESS = {"non_utf8_recipe", "output_sql_injection", "malformed_jsonl_line"}
EXPECT = re.compile(r"^# expect: (\d+):(\d+) \|\s*([^|]*?)\s*\| (.+)$", re.M)


def expectation(path: Path) -> tuple[int, int, str, str]:
    header = path.read_bytes().decode("latin-1")  # the non-UTF-8 case is read as bytes
    m = EXPECT.search(header)
    assert m, f"{path.name}: no `# expect: LINE:COL | key.path | fragment` header"
    return int(m.group(1)), int(m.group(2)), m.group(3).strip(), m.group(4).rstrip()


def snapshot(cat: Path) -> dict:
    """Everything a user sees of the datasets: their catalog rows and every version's rows."""
    meta = api.sql("select name, version, build_id, step_id, fingerprint, rows, created_at "
                   "from datasets order by name, version", catalog=cat)
    rows = {(n, v): api.read(n, version=v, catalog=cat) for n, v in meta.select("name", "version").iter_rows()}
    views = {n: api.sql(f"select * from {n} order by id", catalog=cat) for n in meta["name"].unique()}
    return {"meta": meta, "rows": rows, "views": views}


def assert_intact(cat: Path, before: dict) -> None:
    """The catalog's datasets are as they were: the same file bytes (nothing was written), or else the
    same datasets, versions and rows (a failed build may record itself)."""
    if file_sha256(cat) != before["sha256"]:
        assert_same(before, snapshot(cat))


def assert_same(a: dict, b: dict) -> None:
    assert a["meta"].equals(b["meta"])
    assert a["rows"].keys() == b["rows"].keys()
    for k in a["rows"]:
        assert a["rows"][k].equals(b["rows"][k]), k
    for k in a["views"]:
        assert a["views"][k].equals(b["views"][k]), k


@pytest.fixture(scope="module")
def full_catalog(tmp_path_factory) -> tuple[Path, dict]:
    """A catalog that already holds two datasets (one with two versions)."""
    d = tmp_path_factory.mktemp("malformed_catalog")
    cat = d / "catalog.duckdb"
    recipe = d / "good.yaml"
    for greeting in ("hello", "bonjour"):
        recipe.write_text(textwrap.dedent(f"""
            name: good
            steps:
              - id: greetings
                type: source.inline
                rows: [{{text: {greeting}, lang: x}}, {{text: "日本語 🙂", lang: ja}}]
              - id: tasks
                type: source.jsonl
                path: {HERE / 'data' / 'good.jsonl'}
            outputs:
              greetings: greetings
              tasks: tasks
            """), encoding="utf-8")
        api.build(recipe, catalog=cat)
    snap = {**snapshot(cat), "sha256": file_sha256(cat)}
    assert snap["meta"].height == 3  # greetings v1, v2; tasks v1 (unchanged the second time: no new version)
    return cat, snap


def test_corpus_is_big_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_malformed_recipe(case: Path, full_catalog):
    cat, before = full_catalog
    line, col, key, fragment = expectation(case)
    if case.stem in SUBPROCESS:
        proc = run_dataforge("build", case, "--catalog", cat, timeout=120)
        code, output = proc.returncode, proc.stdout + proc.stderr
        assert proc.stderr.strip(), "errors go to stderr"
    else:
        res = CliRunner().invoke(app, ["build", str(case), "--catalog", str(cat)])
        code, output = res.exit_code, res.output
    assert code == 2, output
    assert "Traceback" not in output
    prefix = f"{case}:{line}:{col}: " + (f"{key}: " if key else "")
    located = [ln for ln in output.splitlines() if ln.startswith(prefix)]
    assert located, f"no line starts with {prefix!r}:\n{output}"
    assert any(fragment in ln for ln in located), f"{fragment!r} not in:\n{output}"
    assert re.match(rf"^{re.escape(str(case))}:\d+:\d+: ", output)  # the message is the first thing printed
    assert_intact(cat, before)


def test_unknown_type_lists_valid_types(full_catalog):
    cat, _ = full_catalog
    res = CliRunner().invoke(app, ["build", str(HERE / "unknown_step_type.yaml"), "--catalog", str(cat)])
    valid = res.output.split("valid types: ", 1)[1]
    for kind in ("source.jsonl", "source.csv", "source.inline", "source.sql"):
        assert kind in valid


def test_validate_command_reports_the_same(full_catalog):
    cat, before = full_catalog
    res = CliRunner().invoke(app, ["validate", str(HERE / "cycle.yaml"), "--catalog", str(cat)])
    assert res.exit_code == 2
    assert res.output.startswith(f"{HERE / 'cycle.yaml'}:10:11: steps[1].from: cycle: a -> b -> a")
    assert_intact(cat, before)


def test_validation_failure_does_not_create_a_catalog(tmp_path):
    cat = tmp_path / "new" / "c.duckdb"
    res = CliRunner().invoke(app, ["build", str(HERE / "unknown_param.yaml"), "--catalog", str(cat)])
    assert res.exit_code == 2
    assert not cat.exists() and not cat.parent.exists()


def test_data_errors_are_found_before_a_build_starts(tmp_path):
    cat = tmp_path / "c.duckdb"
    # bad data is found while the recipe is validated: no build starts, nothing is written
    for stem in ("empty_source", "non_utf8_data", "malformed_jsonl_line", "text_regex_mismatch"):
        res = CliRunner().invoke(app, ["build", str(HERE / f"{stem}.yaml"), "--catalog", str(cat)])
        assert res.exit_code == 2 and re.search(r"\.yaml:\d+:\d+: steps\[0\]", res.output), res.output
    assert not cat.exists()
