"""The executor: reuse by fingerprint, targeted rebuilds, dry runs, failures, and the CLI around it."""

from __future__ import annotations

import json

import polars as pl
import pytest

import spine_kinds  # noqa: F401  (registers test.upper, test.boom, test.explode)
from dataforge import api

CHAIN = """
name: chain
description: {description}
seed: 3
steps:
  - id: src
    type: source.inline
    rows: [{{instruction: say hi}}, {{instruction: add 2 and 3}}, {{instruction: "写一首诗 🙂"}}]
  - id: a
    type: test.upper
    suffix: "{suffix_a}"
  - id: b
    type: test.explode
    n: 2
  - id: side
    type: test.upper
    from: src
    suffix: "{suffix_side}"
    description: {description}
outputs:
  final: b
  side: side
"""


def chain(write, description="first", suffix_a="!", suffix_side="?"):
    return write("chain.yaml", CHAIN.format(description=description, suffix_a=suffix_a, suffix_side=suffix_side))


def statuses(res) -> dict[str, str]:
    return {s.step_id: s.status for s in res.steps}


def test_first_build_builds_and_rebuild_reuses_everything(write, catalog):
    r = chain(write)
    first = api.build(r, catalog=catalog)
    assert statuses(first) == dict.fromkeys(["src", "a", "b", "side"], "built")
    assert first.datasets == {"final": 1, "side": 1} and first.rows == {"final": 6, "side": 3}
    again = api.build(r, catalog=catalog)
    assert statuses(again) == dict.fromkeys(["src", "a", "b", "side"], "reused")
    assert again.datasets == {"final": 1, "side": 1} and not again.new_versions  # nothing changed: no new version
    assert api.read("final", catalog=catalog).equals(api.read("final", version=1, catalog=catalog))
    _, steps = api.history(catalog=catalog)
    per_build = steps.filter(pl.col("build_id") == again.build_id)
    assert set(per_build["status"]) == {"reused"} and per_build.height == 4
    assert per_build["step_id"].to_list() == ["src", "a", "b", "side"]  # run order
    assert per_build.filter(pl.col("step_id") == "b")["rows_out"].item() == 6


def test_param_change_rebuilds_the_step_and_its_descendants_only(write, catalog):
    api.build(chain(write), catalog=catalog)
    res = api.build(chain(write, suffix_a="!!"), catalog=catalog)
    assert statuses(res) == {"src": "reused", "a": "built", "b": "built", "side": "reused"}
    assert api.read("final", catalog=catalog)["instruction"].str.ends_with("!!").all()
    res = api.build(chain(write, suffix_a="!!", suffix_side="??"), catalog=catalog)
    assert statuses(res) == {"src": "reused", "a": "reused", "b": "reused", "side": "built"}


def test_description_edits_do_not_rebuild(write, catalog):
    api.build(chain(write), catalog=catalog)
    res = api.build(chain(write, description="reworded, with more detail"), catalog=catalog)
    assert set(statuses(res).values()) == {"reused"}


def test_source_file_change_rebuilds(write, catalog):
    data = write("d.jsonl", '{"instruction": "x"}\n')
    r = write("r.yaml", """
        name: file
        steps:
          - id: s
            type: source.jsonl
            path: d.jsonl
          - id: up
            type: test.upper
        outputs:
          out: up
        """)
    api.build(r, catalog=catalog)
    data.write_text('{"instruction": "y"}\n')
    assert statuses(api.build(r, catalog=catalog)) == {"s": "built", "up": "built"}
    assert api.read("out", catalog=catalog)["instruction"].to_list() == ["Y"]


def test_force_only_and_dry_run(write, catalog, cli):
    r = chain(write)
    api.build(r, catalog=catalog)
    assert set(statuses(api.build(r, catalog=catalog, force=True)).values()) == {"built"}
    res = api.build(r, catalog=catalog, only=["a"])
    assert statuses(res) == {"src": "reused", "a": "built", "b": "built", "side": "reused"}
    res = cli("build", r, "--catalog", catalog, "--only", "side")
    assert res.exit_code == 0 and "1 step(s) built, 3 reused" in res.output
    res = cli("build", r, "--catalog", catalog, "--only", "nope")
    assert res.exit_code == 2 and "--only 'nope': no such step" in res.output

    before = api.sql("select count(*) as n from builds", catalog=catalog)["n"].item()
    dry = api.build(chain(write, suffix_side="changed"), catalog=catalog, dry_run=True)
    assert statuses(dry) == {"src": "would-reuse", "a": "would-reuse", "b": "would-reuse", "side": "would-build"}
    assert api.sql("select count(*) as n from builds", catalog=catalog)["n"].item() == before
    res = cli("build", r, "--catalog", catalog, "--dry-run", "--force")
    assert res.exit_code == 0 and res.output.count("would-build") == 4


def test_dry_run_does_not_create_the_catalog(write, tmp_path, cli):
    cat = tmp_path / "nowhere" / "c.duckdb"
    res = cli("build", chain(write), "--catalog", cat, "--dry-run")
    assert res.exit_code == 0 and res.output.count("would-build") == 4
    assert not cat.exists() and not cat.parent.exists()


def test_ids_are_content_hashes_stable_across_rebuilds(write, catalog):
    r = chain(write)
    api.build(r, catalog=catalog)
    first = api.read("final", catalog=catalog)
    api.build(r, catalog=catalog, force=True)
    again = api.read("final", catalog=catalog)
    assert first["id"].to_list() == again["id"].to_list()
    assert first["id"].n_unique() == first.height == 6
    assert first["id"].str.len_chars().unique().to_list() == [16]
    # test.upper keeps row ids; test.explode makes new rows and records lineage to their parents
    lineage = api.sql("select row_id, parent_id, step_id from lineage where step_id = 'b'", catalog=catalog)
    assert set(lineage["row_id"]) == set(first["id"])
    side = api.read("side", catalog=catalog)
    assert set(lineage["parent_id"]) == set(side["id"])  # same source ids: upper keeps them


def test_unicode_round_trips(write, catalog):
    texts = ["emoji 🙂🚀👩‍💻", "中文：写一首诗", "日本語のテキスト", "עברית מימין לשמאל", "العربية", "e\u0301 combining",
             "nul-free \t tab \n newline", ""]
    r = write("u.yaml", "name: u\nsteps:\n  - id: s\n    type: source.inline\n    rows: "
              + json.dumps([{"text": t} for t in texts], ensure_ascii=False) + "\noutputs:\n  texts: s\n")
    api.build(r, catalog=catalog)
    assert api.read("texts", catalog=catalog)["text"].to_list() == texts
    assert api.sql("select text from texts where text like '%🚀%'", catalog=catalog)["text"].to_list() == [texts[0]]


def test_vars_and_var_overrides(write, catalog, cli):
    write("en.jsonl", '{"t": "hello"}\n')
    write("fr.jsonl", '{"t": "bonjour"}\n')
    r = write("v.yaml", """
        name: vars
        vars:
          lang: en
          n: 1
        steps:
          - id: s
            type: source.jsonl
            path: ${lang}.jsonl
            limit: ${n}
        outputs:
          out: s
        """)
    api.build(r, catalog=catalog)
    assert api.read("out", catalog=catalog)["t"].to_list() == ["hello"]
    res = cli("build", r, "--catalog", catalog, "--var", "lang=fr")
    assert res.exit_code == 0, res.output
    assert api.read("out", catalog=catalog)["t"].to_list() == ["bonjour"]
    res = cli("build", r, "--catalog", catalog, "--var", "lang")
    assert res.exit_code == 2 and "expected NAME=VALUE" in res.output


def failing_recipe(write, kind: str):
    return write(f"fail_{kind}.yaml", f"""
        name: failing
        steps:
          - id: src
            type: source.inline
            rows: [{{instruction: x}}]
          - id: ok
            type: test.upper
          - id: boom
            type: test.boom
            kind: {kind}
        outputs:
          early: ok
          late: boom
        """)


@pytest.mark.parametrize("kind, code", [("user", 2), ("internal", 1)])
def test_failed_build_keeps_datasets_and_is_recorded(write, catalog, cli, kind, code):
    api.build(chain(write), catalog=catalog)
    before = api.sql("select * from datasets order by name, version", catalog=catalog)
    rows_before = api.read("final", catalog=catalog)
    res = cli("build", failing_recipe(write, kind), "--catalog", catalog)
    assert res.exit_code == code
    assert "Traceback" not in res.output
    if kind == "user":
        assert "fail_user.yaml:10:11: steps[2].kind: boom as requested" in res.output
    else:
        assert res.output.strip().splitlines()[-2:] == [
            "internal error: RuntimeError: boom: an internal fault", "(run with --debug for the traceback)"]
    assert api.sql("select * from datasets order by name, version", catalog=catalog).equals(before)
    assert api.read("final", catalog=catalog).equals(rows_before)
    builds, steps = api.history(catalog=catalog)
    last = builds.row(0, named=True)
    assert last["status"] == "failed" and "boom" in last["error"]
    # the steps that finished are kept and reused by the next attempt; the failed one says why
    done = steps.filter(pl.col("build_id") == last["build_id"])
    assert dict(zip(done["step_id"], done["status"])) == {"src": "built", "ok": "built", "boom": "failed"}
    error = api.sql(f"select error from steps where build_id = '{last['build_id']}' and step_id = 'boom'",
                    catalog=catalog)["error"][0]
    expected = "fail_user.yaml:10:11: steps[2].kind: boom as requested" if kind == "user" else "boom: an internal fault"
    assert expected in error


def test_completed_steps_of_a_failed_build_are_reused(write, catalog):
    with pytest.raises(RuntimeError):
        api.build(failing_recipe(write, "internal"), catalog=catalog)
    r = write("fixed.yaml", failing_recipe(write, "internal").read_text().replace(
        "type: test.boom\n    kind: internal", "type: test.upper"))
    res = api.build(r, catalog=catalog)
    assert statuses(res) == {"src": "reused", "ok": "reused", "boom": "built"}


def test_debug_shows_the_traceback(write, catalog, cli):
    res = cli("--debug", "build", failing_recipe(write, "internal"), "--catalog", catalog)
    assert res.exit_code == 1
    assert "Traceback" in res.output and "RuntimeError: boom" in res.output


def test_a_new_kind_version_rebuilds_that_kind_and_its_descendants(write, catalog, monkeypatch):
    api.build(chain(write), catalog=catalog)
    monkeypatch.setattr(spine_kinds.Explode, "kind_version", "2")
    res = api.build(chain(write), catalog=catalog)
    assert statuses(res) == {"src": "reused", "a": "reused", "b": "built", "side": "reused"}


def test_ctrl_c_while_a_source_streams_into_the_catalog_stops_the_build_and_keeps_nothing(write, catalog, cli,
                                                                                          monkeypatch):
    """DuckDB answers Ctrl-C mid-query with a RuntimeError, not a KeyboardInterrupt: it must still
    read as an interrupt (exit 130), not an internal error, and leave the catalog as it was."""
    from dataforge.catalog.store import Catalog

    write("d.jsonl", "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(50)))
    r = write("r.yaml", "name: big\nsteps: [{id: s, type: source.jsonl, path: d.jsonl, columns: [text]}]\n"
                        "outputs: {big: s}\n")
    other = write("o.yaml", "name: other\nsteps: [{id: o, type: source.inline, rows: [{t: a}]}]\noutputs: {o: o}\n")
    api.build(other, catalog=catalog)
    tables = api.sql("select table_name from duckdb_tables() order by 1", catalog=catalog)

    def interrupted(self, fingerprint, query, progress=None):
        raise RuntimeError("Query interrupted")

    monkeypatch.setattr(Catalog, "stage_output_query", interrupted)
    res = cli("build", r, "--catalog", catalog)
    assert res.exit_code == 130 and "interrupted" in res.output and "internal error" not in res.output
    monkeypatch.undo()
    assert api.sql("select table_name from duckdb_tables() order by 1", catalog=catalog).equals(tables)
    assert api.history(catalog=catalog)[0]["recipe_name"].to_list() == ["other"]
    assert api.build(r, catalog=catalog).rows == {"big": 50}  # and the next build stores it


def test_ctrl_c_after_one_source_was_staged_leaves_no_table_behind(write, catalog, cli, monkeypatch):
    from dataforge.catalog.store import Catalog

    for name in ("a", "b"):
        write(f"{name}.jsonl", "".join(json.dumps({"text": f"{name} {i}"}) + "\n" for i in range(20)))
    r = write("r.yaml", "name: two\nsteps:\n  - {id: a, type: source.jsonl, path: a.jsonl, columns: [text]}\n"
                        "  - {id: b, type: source.jsonl, path: b.jsonl, columns: [text]}\noutputs: {a: a, b: b}\n")
    api.build(write("o.yaml", "name: o\nsteps: [{id: o, type: source.inline, rows: [{t: a}]}]\noutputs: {o: o}\n"),
              catalog=catalog)
    tables = api.sql("select table_name from duckdb_tables() order by 1", catalog=catalog)
    real = Catalog.stage_output_query
    calls = []

    def second_interrupted(self, fingerprint, query, progress=None):
        calls.append(fingerprint)
        if len(calls) == 2:
            raise RuntimeError("Query interrupted")
        return real(self, fingerprint, query, progress)

    monkeypatch.setattr(Catalog, "stage_output_query", second_interrupted)
    res = cli("build", r, "--catalog", catalog)
    assert res.exit_code == 130 and len(calls) == 2
    monkeypatch.undo()
    assert api.sql("select table_name from duckdb_tables() order by 1", catalog=catalog).equals(tables)


# A build that SIGKILLs itself once its sources are stored, before the build is recorded.
_KILLED_AFTER_STAGING = """
import os, signal, sys
from dataforge import api
from dataforge.catalog.store import Catalog

Catalog.begin_build = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
api.build(sys.argv[1], catalog=sys.argv[2])
"""


def test_a_build_killed_after_storing_its_sources_leaves_no_table_the_next_build_keeps(write, catalog):
    """The staged tables of a build killed outright before it began are nobody's: the next build
    drops them (not those of a build still running), instead of keeping them in the file for ever."""
    import subprocess
    import sys

    write("a.jsonl", "".join(json.dumps({"text": f"a {i}"}) + "\n" for i in range(20)))
    r = write("r.yaml", "name: one\nsteps: [{id: a, type: source.jsonl, path: a.jsonl, columns: [text]}]\n"
                        "outputs: {a: a}\n")
    api.build(write("o.yaml", "name: o\nsteps: [{id: o, type: source.inline, rows: [{t: a}]}]\noutputs: {o: o}\n"),
              catalog=catalog)
    tables = api.sql("select table_name from duckdb_tables() order by 1", catalog=catalog)
    child = subprocess.run([sys.executable, "-c", _KILLED_AFTER_STAGING, r, catalog], capture_output=True)
    assert child.returncode == -9, child.stderr
    left = api.sql("select table_name from duckdb_tables() order by 1", catalog=catalog)
    assert left.height == tables.height + 1  # the staged source, recorded by no step output
    write("a.jsonl", "".join(json.dumps({"text": f"changed {i}"}) + "\n" for i in range(20)))
    assert api.build(r, catalog=catalog).rows == {"a": 20}
    orphans = api.sql("select table_name from duckdb_tables() where starts_with(table_name, '_s_') "
                      "and table_name not in (select table_name from step_outputs)", catalog=catalog)
    assert orphans.height == 0
    from dataforge.catalog.store import Catalog

    live = Catalog(catalog)  # a table this (live) process staged stays until it records or drops it
    live.stage_output_query("f" * 64, "select 'x' as id")
    assert live.drop_abandoned_staged() == [] and live.lookup_output("f" * 64) is None
    assert api.sql("select count(*) from _s_ffffffffffffffffffffffff", catalog=catalog).item() == 1


SOURCES = """
name: read
steps:
  - id: fast
    type: source.csv
    path: rows.csv
    columns: [text]
  - id: careful
    type: source.jsonl
    path: rows.jsonl
  - id: few
    type: source.jsonl
    path: rows.jsonl
    limit: 3
  - id: sampled
    type: source.inline
    rows: [{text: a}, {text: b}, {text: c}, {text: d}]
    sample: 2
outputs: {fast: fast, careful: careful, few: few, sampled: sampled}
"""


def test_sources_record_the_rows_they_read_as_rows_in(write, catalog, cli):
    write("rows.csv", "text\n" + "".join(f"line {i}\n" for i in range(7)))
    write("rows.jsonl", "".join(json.dumps({"text": f"row {i}", "n": i}) + "\n" for i in range(5)))
    r = write("read.yaml", SOURCES)
    res = api.build(r, catalog=catalog)
    got = {s.step_id: (s.rows_in, s.rows_out) for s in res.steps}
    # The CSV streams straight into the catalog; the others are read by polars; limit and sample
    # keep fewer rows than were read.
    assert got == {"fast": (7, 7), "careful": (5, 5), "few": (5, 3), "sampled": (4, 2)}
    _, steps = api.history(catalog=catalog)
    assert dict(zip(steps["step_id"], steps["rows_in"])) == {"fast": 7, "careful": 5, "few": 5, "sampled": 4}
    again = api.build(r, catalog=catalog)  # reused steps keep what their build recorded
    assert {s.step_id: (s.status, s.rows_in) for s in again.steps} == {
        "fast": ("reused", 7), "careful": ("reused", 5), "few": ("reused", 5), "sampled": ("reused", 4)}
