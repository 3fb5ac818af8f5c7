"""Loading the step registry stays cheap: every `dataforge` command pays for it.

Step kinds import heavy libraries (nltk, torch, spacy, sklearn, llama.cpp, datasets, ...) inside
`check`/`run`, not at module level; otherwise `dataforge ls` takes seconds and hundreds of MB.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys


HEAVY = ["nltk", "sklearn", "pandas", "torch", "spacy", "sentence_transformers", "llama_cpp", "datasets",
         "transformers", "scipy", "matplotlib", "rouge_score"]

PROBE = """
import json, sys
from dataforge.steps.base import load_registry
kinds = sorted(load_registry())
print(json.dumps({"kinds": kinds, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


@functools.cache
def probe() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_registry_has_every_source_kind():
    kinds = probe()["kinds"]
    assert {"source.jsonl", "source.json", "source.csv", "source.tsv", "source.parquet", "source.hf",
            "source.sql", "source.text", "source.inline"} <= set(kinds)
    assert not any(k.startswith("test.") for k in kinds)


def test_loading_the_registry_imports_no_heavy_library():
    assert probe()["heavy"] == []


def test_every_kind_is_indexed_by_its_module():
    """`steps.MODULES` (what a recipe imports for its kinds) is exactly what the modules register."""
    from dataforge.steps import MODULES
    from dataforge.steps.base import load_registry

    registered = {name: cls.__module__ for name, cls in load_registry().items() if not name.startswith("test.")}
    assert MODULES == registered


LOAD_ONE = """
import json, sys
from dataforge.recipe.validate import load_recipe
load_recipe(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.startswith("dataforge.steps."))))
"""


def test_a_recipe_imports_only_the_kinds_it_uses(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n', encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: one\nsteps: [{id: s, type: source.jsonl, path: d.jsonl}]\noutputs: {d: s}\n",
                      encoding="utf-8")
    out = subprocess.run([sys.executable, "-c", LOAD_ONE, str(recipe)], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "dataforge.steps.sources.jsonl" in loaded
    assert not [m for m in loaded if m.startswith(("dataforge.steps.generate", "dataforge.steps.filter",
                                                    "dataforge.steps.transform"))]
    # An unknown type loads every kind, so its error can list them all.
    recipe.write_text("name: one\nsteps: [{id: s, type: source.jsnl, path: d.jsonl}]\noutputs: {d: s}\n",
                      encoding="utf-8")
    res = subprocess.run([sys.executable, "-c", LOAD_ONE, str(recipe)], capture_output=True, text=True)
    assert "unknown step type 'source.jsnl'; valid types:" in res.stderr and "transform.template" in res.stderr
