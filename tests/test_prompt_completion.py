"""transform.prompt_completion (`style: self_instruct`): the Self-Instruct fine-tuning layouts, end to end
through `dataforge build`: both families of layouts, seeded choice, input rewriting, dedup, accounting."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from dataforge import api

END = "<|endoftext|>"


def rows_file(tmp_path: Path, n: int = 60, extra: list[dict] | None = None) -> Path:
    """n rows with an input (half of them `Sentence: ...`), n without, then `extra`."""
    rows = []
    for i in range(n):
        inp = f"Sentence: the parcel number {i} arrived late" if i % 2 else f"a list of {i} fruits and {i + 1} nuts"
        rows.append({"instruction": f"Classify the mood of message {i}.", "input": inp, "output": f"label {i}"})
    for i in range(n):
        rows.append({"instruction": f"Name a city that starts with letter {i}.", "input": "", "output": f"city {i}"})
    rows += extra or []
    p = tmp_path / "rows.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def build(tmp_path: Path, data: Path, *, seed: int = 1, step: str = "", name: str = "c") -> list[dict]:
    r = tmp_path / f"{name}.yaml"
    r.write_text(f"""
name: pc-{name}
seed: {seed}
steps:
  - id: rows
    type: source.jsonl
    path: {data}
  - id: ft
    type: transform.prompt_completion
    style: self_instruct
{step}
outputs:
  ft: ft
""", encoding="utf-8")
    cat = tmp_path / f"{name}.duckdb"
    api.build(r, catalog=cat)
    con = duckdb.connect(str(cat), read_only=True)
    try:
        cur = con.execute("select * from ft order by id")
        cols = [d[0] for d in cur.description]
        out = [dict(zip(cols, row)) for row in cur.fetchall()]
        out_rej = con.execute("select reason, detail from rejections where step_id = 'ft'").fetchall()
    finally:
        con.close()
    return out, out_rej


def test_rows_with_and_without_input_get_their_own_family_of_layouts(tmp_path):
    out, rej = build(tmp_path, rows_file(tmp_path))
    assert len(out) == 120 and rej == []
    with_input = [r for r in out if r["input"]]
    without = [r for r in out if not r["input"]]
    assert {r["layout"].rsplit("_", 1)[0] for r in with_input} == {"with_input"}
    assert {r["layout"].rsplit("_", 1)[0] for r in without} == {"without_input"}
    # several layouts of each family are in use (7 and 6 exist; 60 rows each reach most of them)
    assert len({r["layout"] for r in with_input}) >= 5
    assert len({r["layout"] for r in without}) >= 4
    for r in out:
        assert r["prompt"].startswith((r["instruction"], "Task: " + r["instruction"]))
        assert r["completion"].strip() == r["output"] + END
        if not r["input"]:
            assert "Input:" not in r["prompt"]
    # a with-input prompt shows the input, the `Sentence:` field name dropped on about half the rows
    sentence = [r for r in with_input if r["input"].startswith("Sentence:")]
    shown_bare = [r for r in sentence if "Sentence:" not in r["prompt"]]
    assert all(r["input"].split(":", 1)[1].strip() in r["prompt"] for r in sentence)
    assert 5 <= len(shown_bare) <= 25
    plain = [r for r in with_input if not r["input"].startswith("Sentence:")]
    assert all(r["input"] in r["prompt"] for r in plain)
    # the layouts with an "Output:" cue put a space before the completion; the others end the prompt
    # with its line break(s), so the completion starts on a line of its own
    for r in out:
        assert r["prompt"].endswith(("Output:", "\n"))
        assert r["completion"].startswith(" ") == r["prompt"].endswith("Output:")


def test_same_seed_same_rows_other_seed_other_layouts(tmp_path):
    data = rows_file(tmp_path)
    a, _ = build(tmp_path, data, seed=1, name="a")
    b, _ = build(tmp_path, data, seed=1, name="b")
    c, _ = build(tmp_path, data, seed=2, name="c")
    assert a == b
    layouts_a = {r["instruction"]: r["layout"] for r in a}
    layouts_c = {r["instruction"]: r["layout"] for r in c}
    assert layouts_a.keys() == layouts_c.keys()
    changed = sum(layouts_a[k] != layouts_c[k] for k in layouts_a)
    assert changed >= 60  # with 6-7 layouts about 85% of the rows change; the same choice everywhere is no seed


def test_a_row_keeps_its_layout_whatever_else_is_in_the_dataset(tmp_path):
    full, _ = build(tmp_path, rows_file(tmp_path, n=60), name="full")
    small, _ = build(tmp_path, rows_file(tmp_path, n=10), name="small")
    by_text = {(r["instruction"], r["input"]): (r["layout"], r["prompt"]) for r in full}
    for r in small:
        assert by_text[(r["instruction"], r["input"])] == (r["layout"], r["prompt"])


def test_repeated_pairs_are_rejections_and_every_row_is_accounted_for(tmp_path):
    # two tasks listed twice (the same row: the same layout), and one with the same text but another output
    extra = [{"instruction": "Name a city that starts with letter 3.", "input": "", "output": "city 3"},
             {"instruction": "Classify the mood of message 4.", "input": "a list of 4 fruits and 5 nuts",
              "output": "label 4"},
             {"instruction": "Name a city that starts with letter 3.", "input": "", "output": "town 3"}]
    data = rows_file(tmp_path, n=20, extra=extra)
    out, rej = build(tmp_path, data)
    assert len(out) + len(rej) == 43 and len(out) == 41
    assert sorted(rej) == sorted(("duplicate", r["prompt"]) for r in out
                                 if r["output"] in ("city 3", "label 4"))
    assert len({(r["prompt"], r["completion"]) for r in out}) == len(out)
    assert sum(r["instruction"].endswith("letter 3.") for r in out) == 2  # city 3 and town 3
    kept, none = build(tmp_path, data, step="    dedup: false", name="nodedup")
    assert len(kept) + len(none) == 43 and none == []


def test_random_layout_off_uses_one_fixed_layout(tmp_path):
    out, _ = build(tmp_path, rows_file(tmp_path, n=10), step="    random_layout: false\n    rewrite_input_rate: 0\n"
                                                             "    end_marker: ''")
    assert {r["layout"] for r in out} == {"fixed"}
    for r in out:
        assert r["prompt"] == f"{r['instruction']}\n\n{r['input']}\n\n"  # the reference's, empty input too
        assert r["completion"] == r["output"]
