"""Issue 8: mistakes that used to pass silently, checks before anything is paid for, the planner's shape."""

from __future__ import annotations

import json

import pytest

from dataforge import api
from dataforge.errors import UserError

ROWS = """[{text: "a fine film", label: 1}, {text: "a dull film", label: 0},
            {text: "great acting", label: 1}, {text: "weak plot", label: 0}]"""


def _steps_row(catalog, build_id, step_id):
    return api.sql(f"select * from steps where build_id = '{build_id}' and step_id = '{step_id}'",
                   catalog=catalog).row(0, named=True)


# -- silent wrong results ------------------------------------------------------------------------

@pytest.mark.parametrize("explicit", [False, True])
def test_an_implicit_input_names_the_task_like_an_explicit_from(write, catalog, explicit):
    src = "\n            from: reviews" if explicit else ""
    r = write("r.yaml", f"""
        name: names
        steps:
          - id: reviews
            type: source.inline
            rows: {ROWS}
          - id: prompts
            type: transform.template{src}
            templates:
              reviews: [{{id: only, prompt: "Review: {{{{ text }}}}", target: "{{{{ label }}}}"}}]
            label_names:
              reviews: {{0: negative, 1: positive}}
        outputs: {{prompts: prompts}}
        """)
    api.build(r, catalog=catalog)
    out = api.read("prompts", catalog=catalog)
    assert sorted(out["target"]) == ["negative", "negative", "positive", "positive"]


def test_symbols_without_from_uses_the_previous_steps_label_names(write, catalog):
    r = write("r.yaml", f"""
        name: names
        steps:
          - id: reviews
            type: source.inline
            rows: {ROWS}
          - id: st
            type: transform.symbols
            k: 1
            relevant_labels: true
            label_names:
              reviews: {{0: negative, 1: positive}}
        outputs: {{st: st}}
        """)
    api.build(r, catalog=catalog)
    out = api.read("st", catalog=catalog)
    assert set(out["task"]) == {"reviews"}
    assert set(out["target"]) == {"negative", "positive"}
    assert all("negative" in p and "positive" in p for p in out["prompt"])


def test_an_unknown_var_override_is_refused(write, catalog, cli):
    r = write("r.yaml", """
        name: v
        vars: {data: here}
        steps: [{id: s, type: source.inline, rows: [{t: "${data}"}]}]
        outputs: {s: s}
        """)
    res = cli("build", r, "--catalog", catalog, "--var", "dat=elsewhere")
    assert res.exit_code == 2
    assert "--var dat: not a variable of" in res.output and "its variables: data" in res.output
    assert not catalog.exists()


def test_cyclic_vars_are_named(write, catalog, cli):
    r = write("r.yaml", """
        name: v
        vars: {a: "x${b}", b: "${a}y"}
        steps: [{id: s, type: source.inline, rows: [{t: "${a}"}]}]
        """)
    res = cli("validate", r)
    assert res.exit_code == 2 and "cyclic variable: a -> b -> a" in res.output
    r2 = write("r2.yaml", """
        name: v
        vars: {root: /data, sub: "${root}/sst2"}
        steps: [{id: s, type: source.inline, rows: [{t: "${sub}"}]}]
        outputs: {s: s}
        """)
    api.build(r2, catalog=catalog, vars={"root": "/elsewhere"})
    assert api.read("s", catalog=catalog)["t"].to_list() == ["/elsewhere/sst2"]


def test_symbols_records_every_row_it_does_not_use(write, catalog):
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
    rows += [{"text": "no label", "label": None}, {"text": "row 0", "label": 0}]  # null label, duplicate
    r = write("r.yaml", f"""
        name: st
        steps:
          - id: src
            type: source.inline
            rows: {json.dumps(rows)}
          - id: st
            type: transform.symbols
            k: 1
            max_prompts_per_task: 5
        outputs: {{st: st}}
        """)
    res = api.build(r, catalog=catalog)
    step = next(s for s in res.steps if s.step_id == "st")
    assert (step.rows_in, step.rows_out, step.rejected) == (10, 5, 5)
    reasons = api.sql("select reason, count(*) as n from rejections where step_id = 'st' group by all order by 1",
                      catalog=catalog)
    assert dict(reasons.iter_rows()) == {"duplicate": 1, "max_prompts_per_task": 3, "null_label": 1}


def test_a_rebuild_that_changes_nothing_publishes_no_new_version(write, catalog, cli):
    r = write("r.yaml", """
        name: v
        steps: [{id: s, type: source.inline, rows: [{t: a}]}]
        outputs: {s: s}
        """)
    api.build(r, catalog=catalog)
    api.build(r, catalog=catalog)
    res = cli("build", r, "--catalog", catalog, "--force")
    assert "dataset s v1: 1 rows (no new version: built again, same fingerprint)" in res.output
    assert api.sql("select count(*) as n from datasets", catalog=catalog)["n"][0] == 1


def test_a_second_recipe_cannot_silently_take_over_a_dataset(write, catalog, cli):
    a = write("a.yaml", """
        name: first
        steps: [{id: s, type: source.inline, rows: [{t: a}]}]
        outputs: {shared_name: s}
        """)
    b = write("b.yaml", """
        name: second
        steps: [{id: s, type: source.inline, rows: [{other: 1, schema: 2}]}]
        outputs:
          shared_name: s
        """)
    api.build(a, catalog=catalog)
    res = cli("build", b, "--catalog", catalog)
    assert res.exit_code == 2
    assert "b.yaml:4:16: outputs.shared_name: dataset 'shared_name' is published by recipe 'first'" in res.output
    assert "--take-over" in res.output
    assert api.read("shared_name", catalog=catalog).columns == ["id", "t"]
    assert api.sql("select count(*) as n from builds where recipe_name = 'second'", catalog=catalog)["n"][0] == 0
    res = cli("build", b, "--catalog", catalog, "--take-over")
    assert res.exit_code == 0 and "dataset shared_name v2" in res.output
    assert api.read("shared_name", catalog=catalog).columns == ["id", "other", "schema"]
    assert api.read("shared_name", version=1, catalog=catalog).columns == ["id", "t"]  # the old version stays
    assert cli("build", b, "--catalog", catalog).exit_code == 0  # now `second` owns it


@pytest.mark.parametrize("recipe_name", ["first", "second"])
def test_an_output_named_like_a_dataset_but_for_case_is_refused(write, catalog, cli, recipe_name):
    # SQL ignores case: `Shared_Name` passed the ownership check and its view replaced `shared_name`'s,
    # so `select * from shared_name` read the other recipe's rows while `show shared_name` did not.
    a = write("a.yaml", """
        name: first
        steps: [{id: s, type: source.inline, rows: [{t: a}]}]
        outputs: {shared_name: s}
        """)
    api.build(a, catalog=catalog)
    b = write("b.yaml", f"""
        name: {recipe_name}
        steps: [{{id: s, type: source.inline, rows: [{{other: 1}}]}}]
        outputs:
          Shared_Name: s
        """)
    for extra in ([], ["--take-over"]):
        res = cli("build", b, "--catalog", catalog, *extra)
        assert res.exit_code == 2
        assert ("b.yaml:4:16: outputs.Shared_Name: output 'Shared_Name' differs from the catalog's dataset "
                "'shared_name' only in case") in res.output
    assert api.sql("select * from shared_name", catalog=catalog).columns == ["id", "t"]
    assert api.sql("select count(*) as n from datasets", catalog=catalog)["n"][0] == 1


def test_take_over_of_the_same_rows_makes_the_recipe_the_owner(write, catalog, cli):
    """A renamed recipe builds the same fingerprint: --take-over must still hand it the name."""
    body = "\nsteps: [{id: s, type: source.inline, rows: [{t: a}]}]\noutputs: {shared_name: s}\n"
    a = write("a.yaml", "name: first" + body)
    b = write("b.yaml", "name: second" + body)
    api.build(a, catalog=catalog)
    res = cli("build", b, "--catalog", catalog, "--take-over")
    assert res.exit_code == 0 and "dataset shared_name v2: 1 rows" in res.output
    assert cli("build", b, "--catalog", catalog).exit_code == 0  # now `second` owns it
    assert cli("build", a, "--catalog", catalog).exit_code == 2


@pytest.mark.parametrize("sample, kept", [(1.0, 10), (0.5, 5), (1, 1), (3, 3)])
def test_sample_float_is_a_fraction_int_a_count(write, catalog, sample, kept):
    rows = json.dumps([{"i": i} for i in range(10)])
    r = write("r.yaml", f"""
        name: s
        steps: [{{id: s, type: source.inline, sample: {sample}, rows: {rows}}}]
        outputs: {{s: s}}
        """)
    api.build(r, catalog=catalog)
    assert api.read("s", catalog=catalog).height == kept


def test_sample_above_one_as_float_is_refused(write, catalog):
    r = write("r.yaml", """
        name: s
        steps: [{id: s, type: source.inline, sample: 2.0, rows: [{i: 1}]}]
        """)
    with pytest.raises(UserError, match=r"r.yaml:2:46: steps\[0\].sample: .*fraction in \(0, 1\].*sample: 2\)"):
        api.validate(r, catalog=catalog)


def _sql_recipes(write):
    write("a.yaml", """
        name: a
        steps: [{id: s, type: source.inline, rows: [{t: a}, {t: b}]}]
        outputs: {alpha: s}
        """)
    write("b.yaml", """
        name: b
        vars: {t: x}
        steps: [{id: s, type: source.inline, rows: [{t: "${t}"}]}]
        outputs: {beta: s}
        """)
    return write("q.yaml", """
        name: q
        steps:
          - id: q
            type: source.sql
            query: select t from alpha
          - id: up
            type: test.upper
            column: t
        outputs: {upper_alpha: up}
        """)


def test_source_sql_is_reused_when_what_it_reads_is_unchanged(write, catalog, tmp_path):
    import spine_kinds  # noqa: F401  (test.upper)

    q = _sql_recipes(write)
    api.build(tmp_path / "a.yaml", catalog=catalog)
    api.build(q, catalog=catalog)
    api.build(tmp_path / "b.yaml", catalog=catalog, vars={"t": "y"})  # another dataset changes
    again = api.build(q, catalog=catalog)
    assert {s.step_id: s.status for s in again.steps} == {"q": "reused", "up": "reused"}
    write("a.yaml", (tmp_path / "a.yaml").read_text().replace("{t: b}", "{t: c}"))
    api.build(tmp_path / "a.yaml", catalog=catalog)  # what it reads changes
    third = api.build(q, catalog=catalog)
    assert {s.step_id: s.status for s in third.steps} == {"q": "built", "up": "built"}
    assert sorted(api.read("upper_alpha", catalog=catalog)["t"]) == ["A", "C"]


def test_source_sql_reads_no_file_unless_allowed_and_then_relative_to_the_recipe(write, catalog, tmp_path,
                                                                                monkeypatch):
    write("sub/data.csv", "t\nfrom-file\n")
    blocked = write("sub/blocked.yaml", """
        name: files
        steps: [{id: q, type: source.sql, query: "select * from read_csv('data.csv')"}]
        outputs: {from_file: q}
        """)
    api.build(write("seed.yaml", "name: seed\nsteps: [{id: s, type: source.inline, rows: [{x: 1}]}]\n"),
              catalog=catalog)
    with pytest.raises(UserError, match="steps\\[0\\].query: .*(disabled|external)"):
        api.build(blocked, catalog=catalog)
    allowed = write("sub/allowed.yaml", blocked.read_text().replace("type: source.sql,",
                                                                    "type: source.sql, allow_files: true,"))
    monkeypatch.chdir(tmp_path)  # not the recipe's folder: the path must resolve against the recipe
    api.build(allowed, catalog=catalog)
    assert api.read("from_file", catalog=catalog)["t"].to_list() == ["from-file"]


# -- checked before anything is paid for ---------------------------------------------------------

LLM_RECIPE = """
    name: paid
    llm: {provider: openai, model: m, base_url: "http://127.0.0.1:9/v1", api_key_env: NO_SUCH_KEY_USED}
    steps:
      - id: first
        type: source.inline
        rows: [{q: hi}]
      - id: ask
        type: generate.prompt
        prompt: "{{ q }}"
      - id: late
        type: source.jsonl
        path: late.jsonl
    outputs: {answers: ask, late: late}
    """


@pytest.mark.parametrize("command", ["validate", "dry-run", "build"])
def test_a_bad_line_deep_in_a_source_is_found_before_any_llm_call(write, catalog, cli, monkeypatch, command):
    monkeypatch.setenv("NO_SUCH_KEY_USED", "sk-test")
    lines = [json.dumps({"text": f"row {i}"}) for i in range(20_000)] + ['{"text": "broken'] + ['{"text": "x"}']
    write("late.jsonl", "\n".join(lines) + "\n")
    r = write("r.yaml", LLM_RECIPE)
    args = {"validate": ["validate", r], "dry-run": ["build", r, "--dry-run"], "build": ["build", r]}[command]
    res = cli(*args, "--catalog", catalog)
    assert res.exit_code == 2
    assert "r.yaml:12:11: steps[2].path:" in res.output and "late.jsonl:20001: invalid JSON at column 10: Unterminated string" in res.output
    assert not catalog.exists()  # no build started, no call made


def test_an_unchanged_source_is_not_read_again(write, catalog, monkeypatch):
    from dataforge.steps.sources.jsonl import JsonlSource

    write("d.jsonl", '{"t": 1}\n{"t": 2}\n')
    r = write("r.yaml", """
        name: once
        steps: [{id: s, type: source.jsonl, path: d.jsonl}]
        outputs: {d: s}
        """)
    reads = []
    original = JsonlSource.read
    monkeypatch.setattr(JsonlSource, "read", lambda self, ctx: reads.append(1) or original(self, ctx))
    api.build(r, catalog=catalog)
    assert len(reads) == 1  # read at validation; the run used those rows
    api.build(r, catalog=catalog)
    assert len(reads) == 1  # fingerprint (file hash) already in the catalog: not parsed again
    api.validate(r, catalog=catalog)
    assert len(reads) == 1


# -- the foundation ------------------------------------------------------------------------------

def test_the_dag_is_stored_with_each_step(write, catalog):
    r = write("r.yaml", """
        name: dag
        steps:
          - {id: a, type: source.inline, rows: [{text: one two three four}]}
          - {id: b, type: source.inline, rows: [{text: five six seven eight}]}
          - {id: ref, type: filter.rouge_l, from: a, reference: b, mode: reference, column: text}
          - {id: clean, type: filter.heuristics, column: text}
        outputs: {clean: clean}
        """)
    res = api.build(r, catalog=catalog)
    for sid, inputs in {"a": [], "b": [], "ref": ["a", "b"], "clean": ["ref"]}.items():
        assert _steps_row(catalog, res.build_id, sid)["inputs"] == inputs
    again = api.build(r, catalog=catalog)
    assert _steps_row(catalog, again.build_id, "clean")["inputs"] == ["ref"]  # reused steps too


def test_sources_come_first_in_the_run_order(write, catalog):
    r = write("r.yaml", """
        name: order
        steps:
          - {id: a, type: source.inline, rows: [{text: x}]}
          - {id: up, type: filter.heuristics, column: text, min_words: 0}
          - {id: b, type: source.inline, rows: [{text: y}]}
        outputs: {up: up, b: b}
        """)
    plan = api.validate(r, catalog=catalog)
    assert [s.id for s in plan.order] == ["a", "b", "up"]


def test_yaml_escapes_of_emoji_load_and_syntax_errors_read_the_same(write, catalog):
    # JSON writers escape emoji as UTF-16 surrogate pairs; libyaml (the fast parser) refuses those, so the
    # loader falls back to PyYAML's parser, whose errors are also the ones every other mistake gets.
    r = write("r.yaml", r"""
        name: emoji
        steps:
          - id: src
            type: source.inline
            rows: [{text: "\ud83d\ude00 a fine film", label: 1}]
        outputs: {out: src}
        """)
    api.build(r, catalog=catalog)
    assert api.read("out", catalog=catalog)["text"].to_list() == ["\U0001F600 a fine film"]
    bad = write("bad.yaml", "name: tabs\nsteps:\n\t- id: src\n")
    with pytest.raises(UserError) as e:
        api.validate(bad)
    assert e.value.line == 3 and "YAML syntax error" in e.value.message and "\\t" in e.value.message


def test_a_forced_rebuild_does_not_hand_another_recipes_dataset_to_this_recipe(write, catalog, cli):
    """Two recipes publish the same rows under their own names; `--force` of one stores the shared table again.
    The other recipe's dataset must stay its own: a later build of it was refused ('published by recipe
    second') because the re-store moved that dataset's build_id to the forcing build."""
    body = "\nsteps: [{id: s, type: source.inline, rows: [{t: a}]}]\n"
    a = write("a.yaml", "name: first" + body + "outputs: {first_rows: s}\n")
    b = write("b.yaml", "name: second" + body + "outputs: {second_rows: s}\n")
    assert cli("build", a, "--catalog", catalog).exit_code == 0
    assert cli("build", b, "--catalog", catalog).exit_code == 0
    forced = cli("build", b, "--catalog", catalog, "--force")
    assert forced.exit_code == 0, forced.output
    again = cli("build", a, "--catalog", catalog)
    assert again.exit_code == 0, again.output
    owners = api.sql("select d.name, b.recipe_name from datasets d join builds b using (build_id) order by d.name",
                     catalog=catalog).rows()
    assert owners == [("first_rows", "first"), ("second_rows", "second")]


def test_a_forced_rebuild_keeps_who_published_each_earlier_version(write, catalog, cli):
    """`second` took `shared_name` over with the same rows (v2); `first` taking it back with --force must not
    rewrite v2 as published by `first` (and so publish no version of its own)."""
    body = "\nsteps: [{id: s, type: source.inline, rows: [{t: a}]}]\noutputs: {shared_name: s}\n"
    a = write("a.yaml", "name: first" + body)
    b = write("b.yaml", "name: second" + body)
    assert cli("build", a, "--catalog", catalog).exit_code == 0
    assert cli("build", b, "--catalog", catalog, "--take-over").exit_code == 0
    back = cli("build", a, "--catalog", catalog, "--take-over", "--force")
    assert back.exit_code == 0 and "dataset shared_name v3" in back.output, back.output
    owners = api.sql("select d.version, b.recipe_name from datasets d join builds b using (build_id) "
                     "order by d.version", catalog=catalog).rows()
    assert owners == [(1, "first"), (2, "second"), (3, "first")]
