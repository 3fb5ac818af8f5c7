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
