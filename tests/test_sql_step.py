"""`transform.sql`: filters, joins, group-bys with lineage, validation before anything runs, reuse,
and no file access."""

from __future__ import annotations

import json

import pytest

from dataforge import api
from dataforge.errors import RecipeErrors, UserError

TASKS = [
    {"text": "Translate the sentence into French", "task": "translate", "score": 0.9},
    {"text": "Translate this word into German", "task": "translate", "score": 0.4},
    {"text": "Summarize the article in two lines", "task": "summarize", "score": 0.8},
    {"text": "Summarize the meeting notes", "task": "summarize", "score": 0.7},
    {"text": "Classify the review as positive or negative", "task": "classify", "score": 0.2},
]
OWNERS = [{"task": "translate", "owner": "ana"}, {"task": "summarize", "owner": "bo"}]


def recipe(write, *steps: dict, out: str = "q", name: str = "r.yaml"):
    doc = {"name": "sqltest", "seed": 1,
           "steps": [{"id": "tasks", "type": "source.inline", "rows": TASKS},
                     {"id": "owners", "type": "source.inline", "rows": OWNERS}, *steps],
           "outputs": {"out": out}}
    return write(name, json.dumps(doc, indent=1))


def ids_of(catalog, step: str) -> dict[str, str]:
    fp = api.sql(f"select fingerprint from steps where step_id = '{step}' order by rowid desc limit 1",
                 catalog=catalog)["fingerprint"][0]
    rows = api.sql(f"select id, text from _s_{fp[:24]}", catalog=catalog)
    return dict(zip(rows["text"], rows["id"]))


def step_row(res, sid: str):
    return next(s for s in res.steps if s.step_id == sid)


def test_filter_keeps_ids_and_rejects_only_when_asked(write, catalog):
    q = "select * from tasks where score >= 0.5 order by score desc"
    res = api.build(recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": q}), catalog=catalog)
    out = api.read("out", catalog=catalog)
    assert out["text"].to_list() == ["Translate the sentence into French", "Summarize the article in two lines",
                                     "Summarize the meeting notes"]
    src = ids_of(catalog, "tasks")
    assert out["id"].to_list() == [src[t] for t in out["text"]]  # kept rows keep their ids
    s = step_row(res, "q")
    assert (s.rows_in, s.rows_out, s.rejected) == (5, 3, 0)  # a `where` is not a rejection by default
    assert api.sql("select count(*) n from lineage", catalog=catalog)["n"][0] == 0

    res = api.build(recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": q,
                                   "rejections": True}, name="r2.yaml"), catalog=catalog)
    s = step_row(res, "q")
    assert (s.rows_in, s.rows_out, s.rejected) == (5, 3, 2) and s.rows_in == s.rows_out + s.rejected
    rej = api.sql("select row_id, reason from rejections where step_id = 'q' order by row_id", catalog=catalog)
    assert set(rej["reason"]) == {"sql"}
    assert sorted(rej["row_id"]) == sorted([src["Translate this word into German"],
                                            src["Classify the review as positive or negative"]])


def test_window_qualify_and_repeatable_sample(write, catalog):
    q = ("select id, task, text from tasks qualify row_number() over (partition by task order by score desc) = 1 "
         "order by task")
    api.build(recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": q, "rejections": True}),
              catalog=catalog)
    out = api.read("out", catalog=catalog)
    assert out["text"].to_list() == ["Classify the review as positive or negative",
                                     "Summarize the article in two lines", "Translate the sentence into French"]
    q2 = "select * from tasks using sample 3 rows (reservoir, 7)"
    r = recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": q2}, name="s.yaml")
    api.build(r, catalog=catalog)
    first = api.read("out", catalog=catalog)
    api.build(r, catalog=catalog, force=True)
    assert api.read("out", catalog=catalog).equals(first) and first.height == 3


def test_join_of_two_steps_makes_new_rows_traced_to_both_parents(write, catalog):
    q = ("select t.text, o.owner, [t.id, o.id] as _parent_id from tasks t join owners o using (task) "
         "order by t.text")
    res = api.build(recipe(write, {"id": "q", "type": "transform.sql", "from": ["tasks", "owners"], "query": q}),
                    catalog=catalog)
    out = api.read("out", catalog=catalog)
    assert out.columns == ["id", "text", "owner"] and out.height == 4
    s = step_row(res, "q")
    assert s.rows_in == 7 and "new rows" in s.notes
    src = ids_of(catalog, "tasks")
    lin = api.sql("select row_id, parent_id from lineage where step_id = 'q'", catalog=catalog)
    row = out.filter(out["text"] == "Summarize the meeting notes").row(0, named=True)
    parents = set(lin.filter(lin["row_id"] == row["id"])["parent_id"])
    assert src["Summarize the meeting notes"] in parents and len(parents) == 2
    assert row["id"] not in src.values()  # a joined row is a new row with a new content id


def test_aggregate_with_list_of_ids_as_lineage(write, catalog):
    q = ("select task, count(*) as n, avg(score) as mean_score, list(id order by id) as _parent_id "
         "from tasks group by task order by task")
    api.build(recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": q}), catalog=catalog)
    out = api.read("out", catalog=catalog)
    assert out["task"].to_list() == ["classify", "summarize", "translate"] and out["n"].to_list() == [1, 2, 2]
    assert "_parent_id" not in out.columns
    src = ids_of(catalog, "tasks")
    lin = api.sql("select row_id, parent_id from lineage where step_id = 'q'", catalog=catalog)
    summ = out.filter(out["task"] == "summarize")["id"][0]
    assert set(lin.filter(lin["row_id"] == summ)["parent_id"]) == {src["Summarize the article in two lines"],
                                                                    src["Summarize the meeting notes"]}
    assert lin.height == 5  # every input row traced to its group


def test_query_without_ids_that_returns_no_rows_builds_an_empty_dataset(write, catalog):
    # An aggregate over nothing (or a `where` no row passes) without `id`: 0 new rows, not a crash.
    q = "select task, count(*) as n from tasks where score > 5 group by task"
    res = api.build(recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": q}), catalog=catalog)
    s = step_row(res, "q")
    assert (s.rows_in, s.rows_out, s.rejected) == (5, 0, 0)
    out = api.read("out", catalog=catalog)
    assert out.height == 0 and out.columns == ["id", "task", "n"]


def test_rejections_refuse_new_rows(write, catalog):
    q = "select task, count(*) as n from tasks group by task"
    r = recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": q, "rejections": True})
    with pytest.raises(UserError, match="every output row must be an input row") as e:
        api.build(r, catalog=catalog)
    assert e.value.line is not None and "rejections" in e.value.render()


@pytest.mark.parametrize("query, fragment", [
    ("select * frm tasks", "syntax error"),
    ("select nope from tasks", 'column "nope" not found'),
    ("select * from datasets", "not one of its inputs; it sees tasks"),
    ("delete from tasks", "only a SELECT may run here, not delete"),
    ("select 1 as a; select 2 as a", "exactly one SELECT"),
    ("select * from tasks t join owners o using (task)", "returns column 'id' twice"),
])
def test_bad_query_is_located_before_anything_runs(write, catalog, query, fragment):
    steps = [{"id": "q", "type": "transform.sql", "from": ["tasks", "owners"] if "owners" in query else "tasks",
              "query": query}]
    r = recipe(write, *steps)
    with pytest.raises(RecipeErrors) as e:
        api.build(r, catalog=catalog)
    err = e.value.errors[0]
    text = r.read_text().splitlines()
    assert fragment in err.message and err.path == "steps[2].query"
    assert '"query"' in text[err.line - 1]  # file:line of the `query` field
    assert not catalog.exists()  # nothing ran: no build was even begun


def test_downstream_column_checks_see_the_query_columns(write, catalog):
    r = recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": "select id, task from tasks"},
               {"id": "f", "type": "filter.heuristics", "column": "text"}, out="f")
    with pytest.raises(RecipeErrors, match="lacks column\\(s\\) 'text'; it has: task"):
        api.build(r, catalog=catalog)


def test_type_errors_are_located_when_the_step_runs(write, catalog):
    r = recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": "select sum(text) as s from tasks"})
    with pytest.raises(UserError, match="No function matches") as e:
        api.build(r, catalog=catalog)
    assert e.value.path == "steps[2].query"
    st = api.sql("select status from steps where step_id = 'q'", catalog=catalog)
    assert st["status"].to_list() == ["failed"]


def test_reused_on_rebuild_and_rebuilt_when_the_query_changes(write, catalog):
    step = {"id": "q", "type": "transform.sql", "from": "tasks", "query": "select * from tasks where score > 0.5"}
    api.build(recipe(write, step), catalog=catalog)
    again = api.build(recipe(write, step), catalog=catalog)
    assert step_row(again, "q").status == "reused"
    changed = api.build(recipe(write, {**step, "query": "select * from tasks where score > 0.3"}), catalog=catalog)
    assert step_row(changed, "q").status == "built" and api.read("out", catalog=catalog).height == 4


@pytest.mark.parametrize("query", [
    "select * from read_csv('{path}')",
    "select t.* from tasks t, read_text('{path}') f",
    "select * from tasks where text in (select content from read_text('{path}'))",
])
def test_external_access_is_refused(write, catalog, tmp_path, query):
    secret = write("secret.csv", "a,b\n1,2\n")
    r = recipe(write, {"id": "q", "type": "transform.sql", "from": "tasks", "query": query.format(path=secret)})
    with pytest.raises(RecipeErrors, match="disabled by configuration"):
        api.build(r, catalog=catalog)


def test_unknown_input_columns_defer_the_check_to_the_run():
    """Input columns unknown at planning: no output columns yet (bound when the step runs)."""
    from dataforge.steps.transform.sql import SqlTransform

    s = SqlTransform.model_validate({"id": "q", "type": "transform.sql", "from": "x", "query": "select a from x"})
    assert s.output_columns([None]) is None
    assert s.output_columns([["a", "b"]]) == ["a"]


def test_example_recipe_builds_offline(catalog):
    from conftest import REPO

    res = api.build(REPO / "recipes" / "sql_curation.yaml", catalog=catalog)
    tagged, per_verb, short = (step_row(res, s) for s in ("tagged", "per_verb", "shortest"))
    assert short.rows_in == short.rows_out + short.rejected and short.rows_out == 10
    lin = api.sql("select count(distinct parent_id) n from lineage where step_id = 'per_verb'", catalog=catalog)
    assert lin["n"][0] == tagged.rows_out  # every task traced to its verb's row
    counted = api.read("seed_tasks_counted", catalog=catalog)
    assert set(counted["id"]) == set(ids_of_step(catalog, "tagged"))  # a join that keeps ids
    verbs = api.read("verbs", catalog=catalog)
    assert verbs["tasks"].sum() == tagged.rows_out and per_verb.rows_out == verbs.height


def ids_of_step(catalog, step: str) -> list[str]:
    fp = api.sql(f"select fingerprint from steps where step_id = '{step}' order by rowid desc limit 1",
                 catalog=catalog)["fingerprint"][0]
    return api.sql(f"select id from _s_{fp[:24]}", catalog=catalog)["id"].to_list()
