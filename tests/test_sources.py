"""Every source kind reads its format; common options (columns, limit, sample) behave the same for all."""

from __future__ import annotations

import json

import polars as pl
import pytest

from dataforge import api

ROWS = [
    {"instruction": "Translate 'cat' to French", "output": "chat", "lang": "fr"},
    {"instruction": "Add 2 and 3", "output": "5", "lang": "en"},
    {"instruction": "Écris un haïku 🌸", "output": "古池や", "lang": "fr"},
]


def build_one(write, catalog, step_yaml: str, **kw) -> pl.DataFrame:
    recipe = write("recipe.yaml", f"""
        name: src
        seed: {kw.pop('seed', 0)}
        steps:
          - id: s
        {step_yaml}
        outputs:
          out: s
        """)
    api.build(recipe, catalog=catalog, **kw)
    return api.read("out", catalog=catalog)


def content(df: pl.DataFrame) -> list[dict]:
    return df.drop("id").to_dicts()


def test_jsonl(write, catalog):
    write("data/tasks.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n")
    df = build_one(write, catalog, "    type: source.jsonl\n            path: data/tasks.jsonl")
    assert content(df) == ROWS
    assert df.columns[0] == "id" and df["id"].n_unique() == 3


def test_json_array_records_key_and_columnar(write, catalog):
    write("a.json", json.dumps(ROWS))
    write("b.json", json.dumps({"meta": 1, "data": ROWS}))
    write("c.json", json.dumps({k: [r[k] for r in ROWS] for k in ROWS[0]}))
    assert content(build_one(write, catalog, "    type: source.json\n            path: a.json")) == ROWS
    assert content(build_one(write, catalog, "    type: source.json\n            path: b.json\n"
                                             "            records_key: data")) == ROWS
    assert content(build_one(write, catalog, "    type: source.json\n            path: c.json")) == ROWS


def test_csv_tsv_delimiter_and_header(write, catalog):
    write("a.csv", "text,label\nhello,1\n\"a, b\",2\n")
    df = build_one(write, catalog, "    type: source.csv\n            path: a.csv")
    assert content(df) == [{"text": "hello", "label": "1"}, {"text": "a, b", "label": "2"}]  # strings by default
    write("b.tsv", "hello\t1\nbye\t2\n")
    df = build_one(write, catalog, "    type: source.tsv\n            path: b.tsv\n            header: false\n"
                                   "            names: [text, label]\n            infer_types: true")
    assert content(df) == [{"text": "hello", "label": 1}, {"text": "bye", "label": 2}]
    write("c.txt", "x;y\n1;2\n")
    df = build_one(write, catalog, "    type: source.csv\n            path: c.txt\n            delimiter: ';'")
    assert content(df) == [{"x": "1", "y": "2"}]


def test_parquet(write, catalog, tmp_path):
    pl.DataFrame(ROWS).write_parquet(tmp_path / "t.parquet")
    assert content(build_one(write, catalog, "    type: source.parquet\n            path: t.parquet")) == ROWS


def test_hf_save_to_disk_and_load_dataset(write, catalog, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    assert content(build_one(write, catalog, "    type: source.hf\n            path: saved")) == ROWS
    datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS[:1])}).save_to_disk(str(tmp_path / "dd"))
    df = build_one(write, catalog, "    type: source.hf\n            path: dd\n            split: test")
    assert content(df) == ROWS[:1]
    write("local/t.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n")
    df = build_one(write, catalog, "    type: source.hf\n            path: local/t.jsonl\n            builder: json")
    assert content(df) == ROWS


def test_text_regex_split(write, catalog):
    write("t.txt", "positive  great movie\n\nnegative\tdull, slow\n")
    df = build_one(write, catalog, "    type: source.text\n            path: t.txt")
    assert content(df) == [{"label": "positive", "text": "great movie"}, {"label": "negative", "text": "dull, slow"}]
    df = build_one(write, catalog, "    type: source.text\n            path: t.txt\n"
                                   "            pattern: '^(?P<word>\\w+)'")
    assert content(df) == [{"word": "positive"}, {"word": "negative"}]


def test_inline_and_sql_over_the_catalog(write, catalog):
    df = build_one(write, catalog, "    type: source.inline\n            rows: [{a: 1, b: x}, {a: 2, b: y}]")
    assert content(df) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    recipe = write("sql.yaml", """
        name: sql
        steps:
          - id: q
            type: source.sql
            query: select b as letter from out where a > 1
        outputs:
          picked: q
        """)
    api.build(recipe, catalog=catalog)
    assert content(api.read("picked", catalog=catalog)) == [{"letter": "y"}]


def test_paths_are_relative_to_the_recipe_not_the_cwd(write, catalog, tmp_path, monkeypatch):
    write("sub/data/t.jsonl", json.dumps(ROWS[0]) + "\n")
    recipe = write("sub/r.yaml", """
        name: rel
        steps:
          - id: s
            type: source.jsonl
            path: data/t.jsonl
        outputs:
          out: s
        """)
    monkeypatch.chdir(tmp_path.parent)
    api.build(recipe, catalog=catalog)
    assert content(api.read("out", catalog=catalog)) == [ROWS[0]]


def test_columns_select_and_rename(write, catalog):
    step = "    type: source.inline\n            rows: [{a: 1, b: x, c: true}]\n"
    assert content(build_one(write, catalog, step + "            columns: [c, a]")) == [{"c": True, "a": 1}]
    assert content(build_one(write, catalog, step + "            columns: {letter: b, n: a}")) == [
        {"letter": "x", "n": 1}]


def test_source_id_column_is_kept_as_source_id(write, catalog):
    df = build_one(write, catalog, "    type: source.inline\n            rows: [{id: 7, t: x}]")
    assert content(df) == [{"source_id": 7, "t": "x"}]
    assert df["id"].dtype == pl.Utf8


def test_limit_and_deterministic_sample(write, catalog):
    rows = ", ".join(f"{{n: {i}}}" for i in range(200))
    step = f"    type: source.inline\n            rows: [{rows}]\n"
    assert build_one(write, catalog, step + "            limit: 5")["n"].to_list() == [0, 1, 2, 3, 4]
    a = build_one(write, catalog, step + "            sample: 20", seed=1)["n"].to_list()
    b = build_one(write, catalog, step + "            sample: 20", seed=1, force=True)["n"].to_list()
    c = build_one(write, catalog, step + "            sample: 20", seed=2)["n"].to_list()
    assert a == b and len(a) == 20 and a != list(range(20)) and a == sorted(a)
    assert c != a
    frac = build_one(write, catalog, step + "            sample: 0.1", seed=1)
    assert frac.height == 20
    assert build_one(write, catalog, step + "            limit: 10\n            sample: 50")["n"].to_list() == \
        list(range(10))


def test_allow_empty(write, catalog):
    write("empty.jsonl", "")
    recipe = write("r.yaml", """
        name: empty
        steps:
          - id: s
            type: source.csv
            path: empty.jsonl
            header: false
            names: [a]
            allow_empty: true
        outputs:
          out: s
        """)
    res = api.build(recipe, catalog=catalog)
    assert res.rows["out"] == 0


def test_allow_empty_on_a_file_without_columns_says_how_to_name_them(write, catalog):
    """The no-rows error says `set allow_empty: true`; doing that on an empty JSONL must not be a dead end."""
    write("empty.jsonl", "")
    recipe = write("r.yaml", """
        name: empty
        steps:
          - {id: s, type: source.jsonl, path: empty.jsonl, allow_empty: true}
        """)
    assert "list them in `columns:`" in _build_err(recipe, catalog)
    write("r.yaml", """
        name: empty
        steps:
          - {id: s, type: source.jsonl, path: empty.jsonl, allow_empty: true, columns: [a]}
        outputs: {out: s}
        """)
    assert api.build(recipe, catalog=catalog).rows["out"] == 0


# -- inputs that used to surface as internal errors ----------------------------------------------

def _build_err(recipe, catalog) -> str:
    from dataforge.errors import UserError

    with pytest.raises(UserError) as e:
        api.build(recipe, catalog=catalog)
    return str(e.value)


def test_a_fifo_as_path_is_refused_without_reading(write, catalog, tmp_path):
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it for reading would block forever
    for kind in ("source.jsonl", "source.csv", "source.json", "source.text", "source.parquet"):
        r = write("r.yaml", f"name: f\nsteps:\n  - id: s\n    type: {kind}\n    path: pipe\noutputs:\n  o: s\n")
        assert "pipe is not a regular file" in _build_err(r, catalog), kind


def test_integers_past_64_bits_stay_exact(write, catalog):
    big = 2**64 + 1
    write("big.jsonl", f'{{"n": 1}}\n{{"n": {big}}}\n{{"n": -{2**63 + 5}}}\n')
    write("big.json", json.dumps([{"n": 1}, {"n": big}]))
    write("big.csv", f"n\n1\n{big}\n")
    write("small.jsonl", '{"n": 1}\n{"n": 9223372036854775807}\n')
    r = write("r.yaml", f"""
        name: big
        steps:
          - id: a
            type: source.jsonl
            path: big.jsonl
          - id: b
            type: source.json
            path: big.json
          - id: c
            type: source.csv
            path: big.csv
            infer_types: true
          - id: d
            type: source.inline
            rows: [{{n: 1}}, {{n: {big}}}]
          - id: small
            type: source.jsonl
            path: small.jsonl
        outputs: {{a: a, b: b, c: c, d: d, small: small}}
        """)
    api.build(r, catalog=catalog)
    assert [int(v) for v in api.read("a", catalog=catalog)["n"]] == [1, big, -(2**63 + 5)]
    for name in "bcd":
        assert [int(v) for v in api.read(name, catalog=catalog)["n"]] == [1, big], name
    small = api.read("small", catalog=catalog)["n"]
    assert small.dtype == pl.Int64 and small.to_list() == [1, 2**63 - 1]  # int64's own range stays int64


def test_case_clash_is_refused_and_columns_resolve_it(write, catalog):
    write("c.jsonl", '{"Text": "upper", "text": "lower"}\n')
    bad = write("bad.yaml", "name: c\nsteps:\n  - id: s\n    type: source.jsonl\n    path: c.jsonl\noutputs:\n  o: s\n")
    msg = _build_err(bad, catalog)
    assert "columns 'Text' and 'text' differ only in case" in msg and "steps[0].path" in msg
    write("ids.csv", "ID,text\n7,x\n")
    ids = write("ids.yaml", "name: i\nsteps:\n  - id: s\n    type: source.csv\n    path: ids.csv\noutputs:\n  o: s\n")
    assert "column 'ID' would clash with dataforge's row id column `id`" in _build_err(ids, catalog)
    good = write("good.yaml", """
        name: c
        steps:
          - id: s
            type: source.jsonl
            path: c.jsonl
            columns: {title: Text, body: text}
        outputs: {o: s}
        """)
    api.build(good, catalog=catalog)
    assert api.read("o", catalog=catalog).select("title", "body").row(0) == ("upper", "lower")


def test_csv_row_with_an_extra_field_names_its_line(write, catalog):
    write("x.csv", 'a,b\n1,2\n"multi\nline",3\n4,5,6\n')
    r = write("r.yaml", "name: x\nsteps:\n  - id: s\n    type: source.csv\n    path: x.csv\noutputs:\n  o: s\n")
    assert "x.csv:5: 3 fields where the header has 2" in _build_err(r, catalog)  # quoted newline counted
