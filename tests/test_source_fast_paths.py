"""Sources read natively (JSONL by DuckDB, CSV by polars straight from the file) give exactly what the
careful readers give: the same values, types and row ids, or the same located error."""

from __future__ import annotations

import json

import polars as pl
import pytest

from dataforge.rows import content_ids
from dataforge.steps.base import PlanContext, StepError
from dataforge.steps.sources import jsonl
from dataforge.steps.sources.jsonl import JsonlSource

COLUMNS = {"prompt": "text", "n": "n", "x": "x", "ok": "ok"}
GOOD = [{"text": "plain", "n": 1, "x": 0.5, "ok": True, "other": {"deep": [1, 2]}},
        {"text": 'quote " and \\ backslash', "n": -7, "x": 1e-7, "ok": False},
        {"text": "é 数据 🙂 \u2028 line sep", "n": 2**63 - 1, "x": -0.0, "ok": None},
        {"text": "", "n": None, "x": 3, "ok": True},
        {"text": None, "n": 0, "x": 123456789.123456789, "ok": True},
        {"n": 5, "x": 2.5, "ok": False}]


def lines(rows: list[dict], *extra: str) -> bytes:
    return ("\n".join([json.dumps(r, ensure_ascii=False) for r in rows] + list(extra)) + "\n").encode()


CASES = {
    "good": lines(GOOD),
    "escaped unicode": lines(GOOD) + b'{"text": "\\u00e9\\ud83d\\ude42\\t", "n": 3, "x": 1.0, "ok": true}\n',
    "crlf and blank lines": lines(GOOD).replace(b"\n", b"\r\n") + b"\r\n   \n",
    "bom": b"\xef\xbb\xbf" + lines(GOOD),
    "string column gets a number": lines(GOOD, '{"text": 12, "n": 1, "x": 1.0, "ok": true}'),
    "string column gets an object": lines(GOOD, '{"text": {"a": 1}, "n": 1, "x": 1.0, "ok": true}'),
    "int column gets a float": lines(GOOD, '{"text": "a", "n": 1.5, "x": 1.0, "ok": true}'),
    "int column gets a string": lines(GOOD, '{"text": "a", "n": "1", "x": 1.0, "ok": true}'),
    "int past 64 bits": lines(GOOD, '{"text": "a", "n": 18446744073709551617, "x": 1.0, "ok": true}'),
    "int just past int64": lines(GOOD, '{"text": "a", "n": 9223372036854775808, "x": 1.0, "ok": true}'),
    "float holding a big integer": lines(GOOD, '{"text": "a", "n": 1, "x": 1e19, "ok": true}'),
    "NaN": lines(GOOD, '{"text": "a", "n": 1, "x": NaN, "ok": true}'),
    "bool column gets a string": lines(GOOD, '{"text": "a", "n": 1, "x": 1.0, "ok": "true"}'),
    "invalid JSON deep in the file": lines(GOOD * 50, '{"text": "broken'),
    "not an object": lines(GOOD, "[1, 2]"),
    "invalid UTF-8": lines(GOOD) + b'{"text": "bad \xff byte", "n": 1, "x": 1.0, "ok": true}\n',
    "lone surrogate": lines(GOOD, '{"text": "\\ud800", "n": 1, "x": 1.0, "ok": true}'),
    "lone low surrogate after an escaped backslash":
        lines(GOOD, '{"text": "a \\\\ud83d\\ude00", "n": 1, "x": 1.0, "ok": true}'),
    "lone low surrogate after a pair": lines(GOOD, '{"text": "\\ud83d\\ude42\\udc00", "n": 1, "x": 1.0, "ok": true}'),
    "escaped pairs and a type change": lines(GOOD) + b'{"text": "\\ud83d\\ude42", "n": 3, "x": 1.0, "ok": true}\n'
                                       + lines(GOOD, '{"text": 12, "n": 1, "x": 1.0, "ok": true}'),
    "duplicate key": lines(GOOD, '{"text": "a", "text": "b", "n": 1, "x": 1.0, "ok": true}'),
    "keys differing in case": lines(GOOD, '{"Text": "a", "text": "b", "n": 1, "x": 1.0, "ok": true}'),
    "raw control character": lines(GOOD) + b'{"text": "a\x01b", "n": 1, "x": 1.0, "ok": true}\n',
    "too deep elsewhere": lines(GOOD, json.dumps({"text": "a", "n": 1, "x": 1.0, "ok": True,
                                                  "o": json.loads("[" * 60 + "]" * 60)})),
}


def test_only_a_lone_surrogate_escape_is_suspect():
    from dataforge.steps.sources.checks import may_hold_lone_surrogate

    for text, lone in [(r'"\ud83d\ude42"', False), (r'"\uD83D\uDE42 and \u00e9"', False), ("plain", False),
                       (r'"\ud83d"', True), (r'"\ude42"', True), (r'"\ude42\ud83d"', True),
                       (r'"\ud83d\ud83d\ude42"', True), (r'"\ud83d\ude42\ud83d"', True),
                       (r'"a \\ud83d\ude00 b"', True), (r'"a \\\ud83d\ude00 b"', False), (r'"\\ud83d"', False)]:
        assert may_hold_lone_surrogate(text) is lone, text
        assert may_hold_lone_surrogate(text.encode()) is lone, text


def read(path, careful: bool, monkeypatch) -> tuple[str, pl.DataFrame | str]:
    if careful:
        monkeypatch.setattr(jsonl, "read_selected", lambda *a, **k: None)
    step = JsonlSource(id="s", type="source.jsonl", path=str(path), columns=COLUMNS)
    try:
        return "rows", step.load(PlanContext(recipe_path=path.parent / "r.yaml", seed=0)).df
    except StepError as e:
        return "error", str(e)
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_matches_the_careful_reader(tmp_path, monkeypatch, case):
    path = tmp_path / "d.jsonl"
    path.write_bytes(CASES[case])
    taken = []
    real = jsonl.read_selected
    monkeypatch.setattr(jsonl, "read_selected", lambda *a: taken.append(r := real(*a)) or r)
    fast_kind, fast = read(path, careful=False, monkeypatch=monkeypatch)
    careful_kind, careful = read(path, careful=True, monkeypatch=monkeypatch)
    assert fast_kind == careful_kind, (fast, careful)
    if fast_kind == "error":
        assert fast == careful
        return
    assert fast.schema == careful.schema
    assert fast.equals(careful)
    assert content_ids(fast).equals(content_ids(careful))  # the same row ids: catalogs stay valid
    if case in ("good", "escaped unicode", "crlf and blank lines"):
        assert taken and taken[0] is not None, "the fast path should have read this file itself"


def careful_and_prepared(step, ctx: PlanContext) -> tuple[pl.DataFrame | str, object]:
    """The careful reader's rows with their ids, and what planning keeps (`prepare`); either is the
    text of its `StepError` when it refuses the file."""
    from dataforge.rows import assign_ids

    try:
        careful: pl.DataFrame | str = assign_ids(step.load(ctx).df)[0]
    except StepError as e:
        careful = str(e)
    try:
        prepared = step.prepare(ctx)
    except StepError as e:
        prepared = str(e)
    return careful, prepared


@pytest.mark.parametrize("case", list(CASES))
def test_rows_stored_straight_from_the_file_match_the_careful_reader(tmp_path, case):
    """What planning keeps for a build (`prepare`): an `SqlLoad` that leaves the rows in the file, whose
    query gives the careful reader's rows with the same ids, or else the careful reader's own outcome."""
    import duckdb

    from dataforge.steps.sources.base import SqlLoad

    path = tmp_path / "d.jsonl"
    path.write_bytes(CASES[case])
    step = JsonlSource(id="s", type="source.jsonl", path=str(path), columns=COLUMNS)
    careful, prepared = careful_and_prepared(step, PlanContext(recipe_path=tmp_path / "r.yaml", seed=0))
    if isinstance(prepared, str):
        assert prepared == careful
        return
    if not isinstance(prepared, SqlLoad):
        assert prepared.df.equals(careful.drop("id"))
        assert case not in ("good", "escaped unicode", "crlf and blank lines"), "should be stored from the file"
        return
    assert prepared.rows == careful.height and prepared.columns == list(COLUMNS)
    stored = duckdb.connect().sql(prepared.query()).pl()
    assert stored.schema == careful.schema and stored.equals(careful)


def test_fast_path_keeps_the_ids_a_build_gave_before(write, catalog):
    """Ids of a stored dataset do not depend on which reader ran: rebuilding with the careful path
    forced gives the same ids, so existing catalogs and fingerprints stay valid."""
    from dataforge import api

    write("d.jsonl", lines(GOOD * 3))
    r = write("r.yaml", f"name: ids\nsteps:\n  - id: s\n    type: source.jsonl\n    path: d.jsonl\n"
                        f"    columns: {json.dumps(COLUMNS)}\noutputs: {{d: s}}\n")
    api.build(r, catalog=catalog)
    fast = api.read("d", catalog=catalog)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jsonl, "read_selected", lambda *a, **k: None)
        mp.setattr(JsonlSource, "prepare", JsonlSource.load)  # the rows read in Python, not stored from SQL
        api.build(r, catalog=catalog, force=True)
    careful = api.read("d", catalog=catalog)
    assert fast["id"].to_list() == careful["id"].to_list() and fast.equals(careful)


CSV_CASES = {
    "plain": b"a,b\n1,x\n2,y\n",
    "bom and crlf": b"\xef\xbb\xbfa,b\r\n1,x\r\n2,\r\n",
    "quoted with newlines and quotes": b'a,b\n"1,5","line\nbreak ""q"""\n2,"" \n',
    "invalid UTF-8": b"a,b\n1,x\xff\n",
    "extra field": b"a,b\n1,x\n2,y,z\n",
    "blank": b"  \n\n",
}


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_csv_read_from_the_file_matches_the_text_path(tmp_path, monkeypatch, case):
    """CSV parsed by polars straight from the file gives what the decode-then-parse path gives."""
    from dataforge.steps.sources.delimited import CsvSource

    path = tmp_path / "d.csv"
    path.write_bytes(CSV_CASES[case])
    ctx = PlanContext(recipe_path=tmp_path / "r.yaml", seed=0)

    def outcome():
        try:
            return CsvSource(id="s", type="source.csv", path=str(path), allow_empty=True).load(ctx).df
        except StepError as e:
            return str(e)

    direct = outcome()
    monkeypatch.setattr(CsvSource, "_read_file", lambda self, p: None)
    text = outcome()
    assert type(direct) is type(text)
    if isinstance(direct, str):
        assert direct == text
    else:
        assert direct.equals(text) and direct.schema == text.schema


CSV_SQL_CASES = {  # -> True where DuckDB should store the file itself
    "plain": (b"a,b,c\n1,x,p\n2,y,q\n", True),
    "empty and quoted empty fields": (b'a,b,c\n,x,z\n"",,""\n', True),
    "empty trailing fields past the header": (b"a,b,c\n1,2,3,,,\n4,5,6\n", False),
    "a line ending in the delimiter": (b"a,b,c\n1,x,\n", False),
    "empty trailing field past the header, CRLF": (b"a,b,c\r\n1,2,3,\r\n4,5,6\r\n", False),
    "invalid UTF-8 in a column not selected": (b"a,b,c\n1,\xff,3\n", False),
    "quoted header name with text after it": (b'"a" ,b,c\n1,2,3\n', False),
    "quoted delimiter, newline and doubled quotes": (b'a,b,c\n"1,2","l1\nl2","say ""hi"""\n', True),
    "quoted header, BOM and CRLF": (b'\xef\xbb\xbf"a","b","c"\r\n"1",x,z\r\n', True),
    "unicode, NUL, spaces, no final newline": ('a,b,c\n naïve ,数据🙂,z\x00\n1,, '.encode(), True),
    "blank line (polars keeps a row of nulls)": (b"a,b,c\n1,x,z\n\n2,y,z\n", False),
    "short row": (b"a,b,c\n1\n", False),
    "whitespace-only line": (b"a,b,c\n1,x,z\n \n", False),
    "extra field": (b"a,b,c\n1,x,z\n2,y,z,w\n", False),
    "quote inside a field": (b'a,b,c\n1"2,x,z\n', False),
    "text after a closing quote": (b'a,b,c\n"ab" ,x,z\n', False),
    "unterminated quote": (b'a,b,c\n"abc,x,z\n', False),
    "lone carriage returns": (b"a,b,c\r1,x,z\r", False),
    "invalid UTF-8": (b"a,b,c\n\xff,x,z\n", False),
    "header only": (b"a,b,c\n", False),
    "names differing in case": (b"a,A,b,c\n1,2,3,4\n", False),
    "selected column missing": (b"a,b\n1,2\n", False),
}


@pytest.mark.parametrize("for_build", [False, True], ids=["validate", "build"])
@pytest.mark.parametrize("case", list(CSV_SQL_CASES))
def test_csv_stored_straight_from_the_file_matches_the_careful_reader(tmp_path, case, for_build):
    """A CSV source DuckDB streams into the catalog stores exactly the careful reader's rows and ids.
    Where the two could differ the careful reader reads the file: at planning, or, for a build, when
    the store's strict parse stops (a store never keeps rows the careful reader refuses)."""
    import duckdb

    from dataforge.steps.sources.base import SqlLoad
    from dataforge.steps.sources.delimited import CsvSource

    data, from_sql = CSV_SQL_CASES[case]
    path = tmp_path / "d.csv"
    path.write_bytes(data)
    step = CsvSource(id="s", type="source.csv", path=str(path), columns={"A": "a", "C": "c"})
    ctx = PlanContext(recipe_path=tmp_path / "r.yaml", seed=0, for_build=for_build)
    careful, prepared = careful_and_prepared(step, ctx)
    if isinstance(prepared, str):
        assert prepared == careful
        return
    if not isinstance(prepared, SqlLoad):
        assert not from_sql and prepared.df.equals(careful.drop("id"))
        return
    try:
        stored = duckdb.connect().sql(prepared.query()).pl()
    except duckdb.Error:  # the build then runs the careful reader
        assert for_build and not from_sql
        return
    if isinstance(careful, str):  # only an empty file may pass the store: the build then asks the careful reader
        assert stored.height == 0 and careful.endswith("source produced no rows (set allow_empty: true to accept that)")
        return
    assert from_sql, "the careful reader should have read this file"
    assert stored.schema == careful.schema and stored.equals(careful)
    assert prepared.rows == (None if for_build else careful.height)


PARQUET = pl.DataFrame({"text": ["plain", 'quote " \\', "é 数据 🙂 \u2028", "", None],
                        "n": [1, -7, 2**63 - 1, None, 0], "k": pl.Series([1, 2, 3, 4, 5], dtype=pl.Int32),
                        "x": [0.5, float("nan"), -0.0, None, 1e300], "ok": [True, False, None, True, True],
                        "tags": [["a"], [], None, ["b", "c"], ["d"]]})


@pytest.mark.parametrize("columns,from_sql", [
    ({"prompt": "text", "n": "n", "k": "k", "x": "x", "ok": "ok"}, True),
    (None, False),  # `tags` is a list: read by polars
    ({"prompt": "text", "tags": "tags"}, False),
    ({"prompt": "text", "missing": "nope"}, False),
    (["text", "n"], True),
])
def test_parquet_stored_straight_from_the_file_matches_polars(tmp_path, columns, from_sql):
    """A Parquet source of plain columns is scanned at planning and stored from SQL with the ids and
    types the polars path gives; anything else is read by polars as before (same errors)."""
    import duckdb

    from dataforge.rows import assign_ids
    from dataforge.steps.sources.base import SqlLoad
    from dataforge.steps.sources.parquet import ParquetSource

    path = tmp_path / "d.parquet"
    PARQUET.write_parquet(path, row_group_size=2)
    step = ParquetSource(id="s", type="source.parquet", path=str(path), columns=columns)
    ctx = PlanContext(recipe_path=tmp_path / "r.yaml", seed=0)
    try:
        careful = assign_ids(step.load(ctx).df)[0]
    except StepError as e:
        with pytest.raises(StepError) as got:
            step.prepare(ctx)
        assert str(got.value) == str(e) and not from_sql
        return
    prepared = step.prepare(ctx)
    assert isinstance(prepared, SqlLoad) == from_sql
    if from_sql:
        stored = duckdb.connect().sql(prepared.query()).pl()
        assert prepared.rows == careful.height
        assert stored.schema == careful.schema and stored.equals(careful, null_equal=True)
    else:
        assert prepared.df.equals(careful.drop("id"))


def test_parquet_dictionaries_of_strings_are_stored_straight_from_the_file(write, catalog):
    """Categorical and Enum columns (Parquet dictionaries of strings) are plain text to DuckDB, and the
    polars path stores them as text too: the file is stored from SQL with the same types and ids."""
    from dataforge import api
    from dataforge.steps.sources.base import SqlLoad

    path = write("d.parquet", "")
    pl.DataFrame({"cat": pl.Series(["a", None, "b"], dtype=pl.Categorical),
                  "enum": pl.Series(["x", "y", None], dtype=pl.Enum(["x", "y"])),
                  "n": [1, 2, 3]}).write_parquet(path)
    r = write("r.yaml", "name: dict\nsteps:\n"
                        "  - {id: fast, type: source.parquet, path: d.parquet}\n"
                        "  - {id: careful, type: source.parquet, path: d.parquet, limit: 10}\n"
                        "outputs: {fast: fast, careful: careful}\n")
    plan = api.validate(r, catalog=catalog)
    assert isinstance(plan.prepared["fast"], SqlLoad) and not isinstance(plan.prepared["careful"], SqlLoad)
    api.build(r, catalog=catalog)
    types = api.sql("select table_name, column_name, data_type from information_schema.columns "
                    "where table_name in ('fast', 'careful') order by ordinal_position", catalog=catalog)
    assert (types.filter(pl.col("table_name") == "fast").drop("table_name").rows()
            == types.filter(pl.col("table_name") == "careful").drop("table_name").rows()
            == [("id", "VARCHAR"), ("cat", "VARCHAR"), ("enum", "VARCHAR"), ("n", "BIGINT")])
    fast, careful = (api.sql(f"select * from {t}", catalog=catalog) for t in ("fast", "careful"))
    assert fast.equals(careful) and fast["cat"].to_list() == ["a", None, "b"]


@pytest.mark.parametrize("name", ["x?.{ext}", "x[1].{ext}", "x*.{ext}"])
@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_a_source_path_with_glob_characters_reads_that_one_file(write, catalog, name, ext):
    """DuckDB and polars read a path holding `*`, `?` or `[` as a glob pattern; a source at such a
    path reads exactly the file it names, never its neighbours (`x1`, `xy`), fast path or not."""
    from dataforge import api

    def put(stem: str, rows: list[dict]) -> str:
        path = write(name.format(ext=ext).replace("x?", stem).replace("x[1]", stem).replace("x*", stem), b"")
        df = pl.DataFrame(rows)
        {"csv": df.write_csv, "jsonl": df.write_ndjson, "parquet": df.write_parquet}[ext](path)
        return path.name

    target = put(name.split(".")[0], [{"t": "mine"}])
    for neighbour in ("x1", "xy", "xa"):
        put(neighbour, [{"t": "neighbour"}, {"t": "neighbour"}])
    r = write("r.yaml", f"name: glob\nsteps:\n"
                        f"  - {{id: picked, type: source.{ext}, path: {json.dumps(target)}, columns: [t]}}\n"
                        f"  - {{id: whole, type: source.{ext}, path: {json.dumps(target)}}}\n"
                        "outputs: {picked: picked, whole: whole}\n")
    assert api.validate(r, catalog=catalog).prepared["picked"] is not None
    api.build(r, catalog=catalog)
    for table in ("picked", "whole"):
        assert api.sql(f"select t from {table}", catalog=catalog)["t"].to_list() == ["mine"]


def test_a_csv_whose_shape_the_readers_differ_on_is_built_by_the_careful_reader(write, catalog):
    """A blank line is a row of nulls to polars and nothing to DuckDB: a build of such a CSV stores
    the careful reader's rows, and no table of the fast path is left behind."""
    from dataforge import api

    write("d.csv", "a,b\nx,1\n\ny,2\n" + "z,3\n" * 5000)
    r = write("r.yaml", "name: shape\nsteps:\n  - {id: s, type: source.csv, path: d.csv, columns: [a, b]}\n"
                        "outputs: {d: s}\n")
    api.build(r, catalog=catalog)
    got = api.sql("select a, b from d", catalog=catalog)
    assert got.height == 5003 and got.row(1) == (None, None) and got.row(2) == ("y", "2")
    tables = api.sql("select count(*) as n from duckdb_tables() where starts_with(table_name, '_s_')",
                     catalog=catalog)
    assert tables["n"][0] == api.sql("select count(*) as n from step_outputs", catalog=catalog)["n"][0] == 1


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_a_build_of_a_plain_file_imports_neither_pyarrow_nor_polars(tmp_path, ext):
    """A source DuckDB stores straight from the file (a Parquet file whose writer recorded its Arrow
    schema, a plain CSV or flat JSONL) is built without importing pyarrow or polars (each ~0.2 s
    and tens of MiB of a small build)."""
    df = pl.DataFrame({"instruction": ["a", "b"], "n": ["1", "2"] if ext == "csv" else [1, 2]})
    {"csv": df.write_csv, "jsonl": df.write_ndjson, "parquet": df.write_parquet}[ext](tmp_path / f"d.{ext}")
    (tmp_path / "r.yaml").write_text(f"name: p\nsteps:\n  - {{id: s, type: source.{ext}, path: d.{ext}, "
                                     "columns: [instruction, n]}\noutputs: {d: s}\n")
    code = ("import sys\nfrom dataforge import api\n"
            f"api.build({str(tmp_path / 'r.yaml')!r}, catalog={str(tmp_path / 'c.duckdb')!r})\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'polars'}))\n")
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "DATAFORGE_EXECUTOR": "local"}).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_the_csv_shape_check_reads_random_files_as_the_readers_would(tmp_path):
    """Random small CSVs of fields, quotes, delimiters, LF/CRLF/lone CR and blank lines: the shape check
    gives one answer whatever its chunk size (1 byte up) and however many stretches it is split into
    (each scanned by its own thread), refuses every file with a blank line, a lone
    carriage return or a line ending in the delimiter, and on every file it calls plain DuckDB's strict
    read gives the careful reader's rows, or the careful reader refuses the file too."""
    import random

    import duckdb

    from dataforge.steps.sources import csv_duckdb
    from dataforge.steps.sources.base import SqlLoad
    from dataforge.steps.sources.delimited import CsvSource

    rng = random.Random(1)
    pieces = [b"a", b"b c", b"\xc3\xa9", b",", b",", b'"', b'""', b"\n", b"\n", b"\r\n", b"\r", b"\n\n"]
    ctx = PlanContext(recipe_path=tmp_path / "r.yaml", seed=0, for_build=True)
    path = tmp_path / "d.csv"
    plain = compared = 0
    for trial in range(300):
        head = rng.choice([b"a,b\n", b'"a",b\r\n', b"\xef\xbb\xbfa,b\n"])
        rows = [b"".join(rng.choices(pieces, k=rng.randint(1, 8))) for _ in range(rng.randint(1, 4))]
        if trial % 3 == 0:  # well-formed rows, quoted fields included, so that many files are plain
            rows = [b",".join(rng.choice([b"x", b'"y,""z""\n"', b"", b'""']) for _ in range(2)) + b"\n"
                    for _ in range(rng.randint(1, 4))]
        data = head + b"".join(rows)
        path.write_bytes(data)
        answers = {csv_duckdb.plain_shape(path, ",", chunk, parts) for chunk in (1, 2, 3, 5, 8, 1 << 24)
                   for parts in (1, 2, 3)}
        assert len(answers) == 1, (data, answers)
        body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
        if b"\n\n" in body or b"\n\r\n" in body or b",\n" in body or b",\r\n" in body or body.endswith(b","):
            assert answers == {False}, data
        if any(body[i] == 13 and body[i + 1:i + 2] != b"\n" for i in range(len(body))):
            assert answers == {False}, data
        if answers != {True}:
            continue
        plain += 1
        careful, prepared = careful_and_prepared(CsvSource(id="s", type="source.csv", path=str(path),
                                                           columns=["a", "b"], allow_empty=True), ctx)
        if not isinstance(prepared, SqlLoad):
            continue
        try:
            stored = duckdb.connect().sql(prepared.query()).pl()
        except duckdb.Error:  # the build then runs the careful reader
            continue
        assert not isinstance(careful, str) and stored.equals(careful), (data, stored, careful)
        compared += 1
    assert plain > 40 and compared > 25, (plain, compared)


def test_the_head_of_a_flat_jsonl_is_typed_as_pyarrow_types_it():
    """The first MiB of a flat JSONL is typed without importing pyarrow (~0.2 s): on every head the
    json-module typer answers, its types are the ones pyarrow's reader gives, and it answers for
    the common flat shapes; anything else (nesting, timestamp-like strings, kind changes, numbers
    past int64/double, blank or CR lines, several values on a line) is left to pyarrow."""
    import random

    import pyarrow as pa
    import pyarrow.json as pj

    from dataforge.steps.sources.jsonl import _flat_head_types

    values = ["a", "é 数据 🙂", "", "2020-01-01", "2020-01-01T10", "1999", 0, -0, 7, 2**63 - 1, 2**63, -(2**63) - 1,
              1.5, -0.0, 1e300, True, False, None, [1], {"x": 1}]
    rng = random.Random(0)
    answered = 0
    for trial in range(400):
        pool = rng.sample(values, rng.randint(1, 4))
        keys = ["a", "b", "c"][: rng.randint(1, 3)]
        rows = [{k: rng.choice(pool) for k in keys if rng.random() < 0.9} for _ in range(rng.randint(1, 6))]
        head = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        if trial % 50 == 0:
            head = head.replace(b"\n", b"\r\n", 1)
        wanted = [k for k in keys if rng.random() < 0.8] or keys[:1]
        flat = _flat_head_types(head, wanted)
        try:
            schema = pj.read_json(pa.BufferReader(head)).schema
            arrow = [(c, str(schema.field(c).type)) for c in wanted] if all(c in schema.names for c in wanted) else None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            arrow = None
        if flat is not None:
            answered += 1
            assert arrow is not None and [(f.name, f.type) for f in flat] == arrow, (head, wanted, flat, arrow)
    assert answered > 60
    flat_file = b"".join(json.dumps({"instruction": f"write {i}", "n": i, "x": i / 3, "ok": i % 2 == 0,
                                     "input": None if i % 2 else "y"}).encode() + b"\n" for i in range(3000))
    assert [(f.name, f.type) for f in _flat_head_types(flat_file, ["instruction", "n", "x", "ok", "input"])] == [
        ("instruction", "string"), ("n", "int64"), ("x", "double"), ("ok", "bool"), ("input", "string")]
    for bad in (b'{"a": 1}\n\n{"a": 2}\n', b'{"a": 1} {"a": 2}\n', b'{"a": 1}, {"a": 2}\n', b'[1]\n', b'{"a": 1,}\n'):
        assert _flat_head_types(bad, ["a"]) is None, bad


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_a_source_in_a_key_value_folder_reads_the_file_not_the_folder_name(write, catalog, ext):
    """DuckDB reads `n=99/` in a path as a Hive partition (a column `n` = 99 over every row) unless
    told not to: a source there stores the file's own columns and values, fast path or not."""
    from dataforge import api

    df = pl.DataFrame({"n": ["1", "2"] if ext == "csv" else [1, 2], "s": ["a", "b"]})
    path = write(f"part/n=99/d.{ext}", b"")
    {"csv": df.write_csv, "jsonl": df.write_ndjson, "parquet": df.write_parquet}[ext](path)
    r = write("r.yaml", f"name: hive\nsteps:\n"
                        f"  - {{id: picked, type: source.{ext}, path: part/n=99/d.{ext}, columns: [n, s]}}\n"
                        f"  - {{id: whole, type: source.{ext}, path: part/n=99/d.{ext}}}\n"
                        "outputs: {picked: picked, whole: whole}\n")
    api.build(r, catalog=catalog)
    for table in ("picked", "whole"):
        got = api.sql(f"select * exclude (id) from {table}", catalog=catalog)
        assert got.columns == ["n", "s"] and got["n"].cast(pl.Utf8).to_list() == ["1", "2"], (table, got)


def test_parquet_columns_whose_arrow_type_duckdb_cannot_see_take_the_careful_path(write, catalog):
    """A Duration is a plain INT64 in Parquet, its type only in the `ARROW:schema` DuckDB ignores:
    such a file is read by polars (an INTERVAL, not a BIGINT, with polars' ids); so is a file that
    names a column twice, which the careful reader refuses rather than DuckDB renaming one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataforge import api
    from dataforge.errors import UserError
    from dataforge.steps.sources.base import SqlLoad

    pl.DataFrame({"d": pl.Series([1, 2, None], dtype=pl.Duration("us")), "s": ["a", "b", "c"]}).write_parquet(
        write("d.parquet", b""))
    r = write("r.yaml", "name: dur\nsteps:\n"
                        "  - {id: fast, type: source.parquet, path: d.parquet}\n"
                        "  - {id: careful, type: source.parquet, path: d.parquet, limit: 10}\n"
                        "outputs: {fast: fast, careful: careful}\n")
    assert not isinstance(api.validate(r, catalog=catalog).prepared["fast"], SqlLoad)
    api.build(r, catalog=catalog)
    types = api.sql("select table_name, data_type from information_schema.columns where column_name = 'd' "
                    "and table_name in ('fast', 'careful') "
                    "order by table_name", catalog=catalog).rows()
    assert types == [("careful", "INTERVAL"), ("fast", "INTERVAL")]
    differ = api.sql("select count(*) as n from ((select * from fast except select * from careful) "
                     "union all (select * from careful except select * from fast))", catalog=catalog)
    assert differ["n"][0] == 0

    pq.write_table(pa.table([pa.array([1, 2]), pa.array(["x", "y"])], names=["a", "a"]), write("two.parquet", b""))
    r2 = write("r2.yaml", "name: twice\nsteps:\n  - {id: t, type: source.parquet, path: two.parquet}\n"
                          "outputs: {t: t}\n")
    with pytest.raises(UserError, match="more than one|duplicate|twice"):
        api.build(r2, catalog=catalog)


def test_a_file_that_changes_after_planning_is_read_by_the_careful_path(write, catalog):
    """The build stores a planned `SqlLoad` straight from the file, checking it as it stores it; should
    the file stop passing the checks, nothing half-stored is kept and the careful path names the line.
    A catalog the build made is removed; one that existed keeps exactly what it had."""
    from dataforge import api
    from dataforge.build import execute
    from dataforge.errors import UserError
    from dataforge.steps.sources.base import SqlLoad

    data = write("d.jsonl", lines(GOOD * 3))
    r = write("r.yaml", f"name: late\nsteps:\n  - id: s\n    type: source.jsonl\n    path: d.jsonl\n"
                        f"    columns: {json.dumps(COLUMNS)}\noutputs: {{d: s}}\n")
    plan = api.validate(r, catalog=catalog)
    assert isinstance(plan.prepared["s"], SqlLoad)  # planning kept no rows
    with open(data, "a", encoding="utf-8") as fh:
        fh.write('{"text": "broken\n')
    bad = r"r\.yaml:5:11: steps\[0\]\.path: .*d\.jsonl:19: invalid JSON"
    with pytest.raises(UserError, match=bad):
        execute(plan, catalog, quiet=True)
    assert not catalog.exists()

    other = write("o.yaml", "name: other\nsteps: [{id: o, type: source.inline, rows: [{t: a}]}]\noutputs: {o: o}\n")
    api.build(other, catalog=catalog)
    before = api.sql("select table_name from duckdb_tables() order by 1", catalog=catalog)
    with pytest.raises(UserError, match=bad):
        api.build(r, catalog=catalog)  # planned for a build: the store itself meets the bad line
    assert api.sql("select table_name from duckdb_tables() order by 1", catalog=catalog).equals(before)
    assert api.sql("select count(*) as n from builds", catalog=catalog)["n"][0] == 1


def test_parquet_validate_reads_every_value_not_the_statistics(tmp_path):
    """`validate` of a Parquet source checks the values themselves (row-group statistics would count
    rows without reading them): a string that is not UTF-8 is found before any build."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataforge.steps.sources.parquet import ParquetSource

    values = [b"ok", b"bad \xff"] * 3
    offsets = pa.array([sum(map(len, values[:i])) for i in range(len(values) + 1)], pa.int32())
    text = pa.Array.from_buffers(pa.string(), len(values), [None, offsets.buffers()[1], pa.py_buffer(b"".join(values))])
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": text, "n": list(range(6))}), path)
    step = ParquetSource(id="s", type="source.parquet", path=str(path), columns={"t": "text", "n": "n"})
    with pytest.raises(StepError, match="UTF-8|utf-8|utf8"):
        step.prepare(PlanContext(recipe_path=tmp_path / "r.yaml", seed=0))


def test_jsonl_nesting_too_deep_for_python_in_a_key_not_selected_is_read_by_duckdb(tmp_path):
    """A documented leniency: the careful reader cannot parse a value nested ~1,000 levels deep, but
    DuckDB skips it when the recipe does not select its key, so the file is stored."""
    import duckdb

    from dataforge.rows import assign_ids
    from dataforge.steps.sources.base import SqlLoad

    good = b'{"text": "a", "n": 1}\n' * 60_000  # past the first MiB, which pyarrow types
    deep = ('{"text": "b", "n": 2, "other": ' + "[" * 1500 + "]" * 1500 + "}\n").encode()
    path = tmp_path / "d.jsonl"
    path.write_bytes(good + deep)
    step = JsonlSource(id="s", type="source.jsonl", path=str(path), columns={"t": "text", "n": "n"})
    for for_build in (False, True):
        load = step.prepare(PlanContext(recipe_path=tmp_path / "r.yaml", seed=0, for_build=for_build))
        assert isinstance(load, SqlLoad)
        stored = duckdb.connect().sql(load.query()).pl()
        assert stored.height == 60_001 and stored["t"][-1] == "b"
    careful = pl.DataFrame({"t": ["a"] * 60_000 + ["b"], "n": [1] * 60_000 + [2]})
    assert stored.equals(assign_ids(careful)[0])
