"""The example recipes in recipes/ stay valid, and the quickstart (the README's main job) builds."""

from __future__ import annotations

from pathlib import Path

import pytest

import dataforge.api as api
from conftest import REPO

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_example_recipe_validates(recipe: Path, catalog: Path):
    plan = api.validate(recipe, catalog=catalog)
    assert plan.recipe.outputs, f"{recipe.name} publishes no dataset"


@pytest.mark.xdist_group("quickstart")
def test_quickstart_builds_offline_filters_and_answers(quickstart):
    catalog, res = quickstart
    assert res.status == "ok"
    assert res.rows["seed_tasks"] == 20 and res.rows["model_answers"] == 20
    reasons = api.sql("select step_id, reason from rejections where step_id <> 'new_tasks' "
                      "order by step_id, reason", catalog=catalog).rows()
    assert reasons == [("clean", "blacklist:draw"), ("clean", "too_short"), ("unique", "rouge_l")]
    answers = api.read("model_answers", catalog=catalog)
    assert answers["model_output"].str.len_chars().min() > 0
    calls = api.sql("select step_id, status, count(*) from llm_calls group by all order by all",
                    catalog=catalog).rows()
    # one Self-Instruct round: 2 list prompts, then one yes/no prompt per kept instruction
    new = api.read("new_tasks", catalog=catalog)
    assert calls == [("answers", "ok", 20), ("new_tasks", "ok", 2 + new.height)]
    assert 1 <= new.height <= 4 and set(new["round"]) == {0}
    # the candidates it dropped are rejections that carry their text
    dropped = api.sql("select count(*) from rejections where step_id = 'new_tasks' and detail is not null",
                      catalog=catalog).rows()[0][0]
    assert dropped >= 1
    seeds = set(api.read("seed_tasks", catalog=catalog)["instruction"])
    assert not set(new["instruction"]) & seeds  # the pool starts with the seeds: a copy of one is never kept

    again = api.build(REPO / "recipes" / "quickstart.yaml", catalog=catalog)
    assert {s.status for s in again.steps} == {"reused"}
