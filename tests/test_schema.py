"""The checked-in JSON Schema and recipe reference must match what `dataforge schema` generates now."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Generated in a fresh interpreter: test modules register test-only step kinds in this one.
GENERATE = """
import json, sys
from dataforge.recipe.reference import reference_markdown
from dataforge.recipe.schema import schema_json
sys.stdout.write(json.dumps({"schema": schema_json(), "reference": reference_markdown()}))
"""


@functools.cache
def _generated() -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", GENERATE], capture_output=True, text=True, encoding="utf-8",
                          check=True, cwd=REPO)
    return json.loads(proc.stdout)


def generate(what: str) -> str:
    return _generated()[what]


def test_checked_in_schema_is_current():
    fresh = generate("schema")
    checked_in = (REPO / "schemas" / "recipe.schema.json").read_text(encoding="utf-8")
    assert checked_in == fresh, "schemas/recipe.schema.json is stale: run `dataforge schema`"


def test_checked_in_reference_is_current():
    fresh = generate("reference")
    checked_in = (REPO / "docs" / "recipe-reference.md").read_text(encoding="utf-8")
    assert checked_in == fresh, "docs/recipe-reference.md is stale: run `dataforge schema`"


def test_schema_lists_every_source_kind_with_descriptions():
    schema = json.loads(generate("schema"))
    kinds = {d["properties"]["type"].get("const") or tuple(d["properties"]["type"].get("enum", ()))
             for d in schema["$defs"].values() if "type" in d.get("properties", {})}
    flat = {k for kind in kinds for k in ((kind,) if isinstance(kind, str) else kind)}
    assert {"source.jsonl", "source.json", "source.csv", "source.tsv", "source.parquet", "source.hf",
            "source.sql", "source.text", "source.inline"} <= flat
    jsonl = next(d for d in schema["$defs"].values() if d.get("properties", {}).get("type", {}).get("const")
                 == "source.jsonl")
    assert jsonl["properties"]["path"]["description"].startswith("File to read")
    assert schema["properties"]["seed"]["description"]


def test_schema_command_writes_both_files(tmp_path, cli):
    res = cli("schema", "--out", tmp_path / "s.json", "--reference", tmp_path / "ref.md")
    assert res.exit_code == 0
    assert json.loads((tmp_path / "s.json").read_text())["title"] == "dataforge recipe"
    assert (tmp_path / "ref.md").read_text().startswith("# Recipe reference")


def test_every_settings_block_the_reference_points_at_has_its_section():
    """A field whose default is "see its section" (`sampling:`, `prompts:`, ...) gets a table of its own."""
    ref = generate("reference")
    kind = None
    for line in ref.splitlines():
        if line.startswith("## `"):
            kind = line.split("`")[1]
        if kind and "| see its section |" in line:
            assert f"### `{kind}`: `{line.split('`')[1]}`" in ref, line
    assert "| `max_tokens` | int | `1024` |" in ref  # generate.self_instruct's sampling.max_tokens
