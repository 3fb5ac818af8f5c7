"""The Parquet fast path's own reader of a file's recorded Arrow schema, held to pyarrow's."""

from __future__ import annotations

import base64
import datetime as dt
import decimal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dataforge.steps.sources import arrow_schema
from dataforge.steps.sources.parquet import _plain

ARROW_COLUMNS = {
    "string": pa.array(["a", None], pa.string()),
    "large_string": pa.array(["a", "é"], pa.large_string()),
    "int8": pa.array([1, 2], pa.int8()),
    "int16": pa.array([1, 2], pa.int16()),
    "int32": pa.array([1, None], pa.int32()),
    "int64": pa.array([1, 2], pa.int64()),
    "uint32": pa.array([1, 2], pa.uint32()),
    "uint64": pa.array([1, 2], pa.uint64()),
    "float16": pa.array([1.0, 2.0], pa.float16()),
    "float32": pa.array([1.5, 2.0], pa.float32()),
    "float64": pa.array([1.5, None], pa.float64()),
    "bool": pa.array([True, None]),
    "null": pa.array([None, None], pa.null()),
    "binary": pa.array([b"a", b"b"]),
    "fixed_binary": pa.array([b"ab", b"cd"], pa.binary(2)),
    "date": pa.array([dt.date(2020, 1, 1), None]),
    "timestamp": pa.array([dt.datetime(2020, 1, 1), None], pa.timestamp("us")),
    "timestamp_tz": pa.array([dt.datetime(2020, 1, 1), None], pa.timestamp("ms", tz="UTC")),
    "time": pa.array([dt.time(1, 2), None], pa.time64("us")),
    "duration": pa.array([1, 2], pa.duration("us")),
    "decimal": pa.array([decimal.Decimal("1.5"), None], pa.decimal128(5, 2)),
    "list": pa.array([[1], [2, 3]]),
    "large_list": pa.array([["a"], []], pa.large_list(pa.string())),
    "struct": pa.array([{"x": 1}, {"x": 2}]),
    "map": pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int64())),
    "dict_string": pa.array(["a", "b"]).dictionary_encode(),
    "dict_int": pa.array([1, 2], pa.int32()).dictionary_encode(),
}
if hasattr(pa, "string_view"):  # pyarrow >= 16
    ARROW_COLUMNS["string_view"] = pa.array(["a", "数据"], pa.string_view())
if hasattr(pa, "uuid"):  # extension types pyarrow registers itself (>= 18, >= 19)
    ARROW_COLUMNS["uuid"] = pa.array([b"0123456789abcdef", b"fedcba9876543210"], pa.uuid())
if hasattr(pa, "json_"):
    ARROW_COLUMNS["json"] = pa.array(['{"a": 1}', "[]"], pa.json_())


def pyarrow_answer(path) -> list[tuple[str, bool]]:
    return [(f.name, _plain(f.type)) for f in pq.read_schema(path)]


def test_every_arrow_type_a_parquet_file_records_reads_as_pyarrow_reads_it(tmp_path):
    """One column of each Arrow type pyarrow writes to Parquet: the same names and the same plain or
    not, except that an extension type (its storage may be a plain string) always goes to the
    careful reader."""
    path = tmp_path / "all.parquet"
    pq.write_table(pa.table(ARROW_COLUMNS), path)
    got = arrow_schema.parquet_fields(path)
    assert got is not None
    ours = [(name, kind is not None) for name, kind in got]
    theirs = [(name, plain and name not in ("uuid", "json")) for name, plain in pyarrow_answer(path)]
    assert ours == theirs
    assert {n for n, plain in ours if plain} == {"string", "large_string", "int32", "int64", "float64", "bool",
                                                "dict_string", "dict_int"} | ({"string_view"} & set(ARROW_COLUMNS))
    assert dict(got)["float64"] == "double" and dict(got)["dict_string"] == "string"


def test_polars_files_read_as_pyarrow_reads_them(tmp_path):
    """polars' writer records its own Arrow schema: Categorical, Enum, Duration, nested and
    the plain types all agree with pyarrow."""
    df = pl.DataFrame({
        "s": ["a", None], "cat": pl.Series(["x", "y"], dtype=pl.Categorical),
        "enum": pl.Series(["x", "y"], dtype=pl.Enum(["x", "y"])), "i": [1, 2], "i32": pl.Series([1, 2], dtype=pl.Int32),
        "u8": pl.Series([1, 2], dtype=pl.UInt8), "f": [0.5, None], "b": [True, False],
        "d": pl.Series([1, 2], dtype=pl.Duration("ms")), "l": [[1], [2]], "st": [{"a": 1}, {"a": 2}],
        "date": [dt.date(2020, 1, 1)] * 2,
    })
    path = tmp_path / "polars.parquet"
    df.write_parquet(path)
    got = arrow_schema.parquet_fields(path)
    assert got is not None and [(n, k is not None) for n, k in got] == pyarrow_answer(path)
    assert [n for n, k in got if k] == ["s", "cat", "enum", "i", "i32", "f", "b"]


def test_files_without_a_recorded_schema_or_whose_schema_disagrees_are_left_to_pyarrow(tmp_path):
    """A file DuckDB wrote records no Arrow schema; one whose Arrow schema names other columns than
    its Parquet schema, or whose plain column is stored as another type, is not trusted."""
    import duckdb

    own = tmp_path / "duckdb.parquet"
    duckdb.sql(f"COPY (SELECT 'a' AS s, 1 AS n) TO '{own}' (FORMAT parquet)")
    assert arrow_schema.parquet_fields(own) is None

    for i, lie in enumerate((pa.schema([("s", pa.string()), ("other", pa.int64())]),
                             pa.schema([("s", pa.string()), ("n", pa.string())]))):
        path = tmp_path / f"lie{i}.parquet"
        encoded = base64.b64encode(lie.serialize().to_pybytes()).decode()
        duckdb.sql(f"COPY (SELECT 'a' AS s, 1::BIGINT AS n) TO '{path}' "
                   f"(FORMAT parquet, KV_METADATA {{'ARROW:schema': '{encoded}'}})")
        assert pq.read_metadata(path).metadata[b"ARROW:schema"] == encoded.encode()
        assert arrow_schema.fields(encoded.encode()) is not None and arrow_schema.parquet_fields(path) is None

    assert arrow_schema.parquet_fields(tmp_path / "missing.parquet") is None
    (tmp_path / "text.parquet").write_text("not parquet")
    assert arrow_schema.parquet_fields(tmp_path / "text.parquet") is None


def test_a_damaged_schema_entry_is_refused_whole_as_pyarrow_refuses_it():
    """Every truncation of a real entry, bytes that are not one, and random byte damage: the decoder
    never raises, and it reads no damaged entry that pyarrow's reader refuses (the file's careful
    reader would refuse the file: the fast path must not store it)."""
    import random

    entry = base64.b64encode(pa.schema([(k, v.type) for k, v in ARROW_COLUMNS.items()]).serialize().to_pybytes())
    assert [n for n, _ in arrow_schema.fields(entry)] == list(ARROW_COLUMNS)
    raw = base64.b64decode(entry)
    for cut in range(0, len(raw), 7):
        assert arrow_schema.fields(base64.b64encode(raw[:cut])) is None, cut
    for junk in (b"", b"!!!", base64.b64encode(b"\xff" * 40), base64.b64encode(bytes(range(256)))):
        assert arrow_schema.fields(junk) is None

    plain = pa.schema([("s", pa.string()), ("n", pa.int64()), ("b", pa.bool_()),
                       ("x", pa.dictionary(pa.int8(), pa.string())), ("l", pa.list_(pa.int32()))],
                      metadata={"k": "v"}).serialize().to_pybytes()
    rng = random.Random(0)
    read = 0
    for _ in range(3000):
        damaged = bytearray(plain)
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if arrow_schema.fields(base64.b64encode(bytes(damaged))) is None:
            continue
        read += 1
        pa.ipc.read_schema(pa.py_buffer(bytes(damaged)))  # raises where pyarrow refuses it
    assert read > 100


def test_a_parquet_file_whose_schema_entry_lacks_a_type_is_refused_as_polars_refuses_it(tmp_path):
    """A field without a type (mandatory in Arrow) in an otherwise readable entry: the build does not
    store the file; it fails as the careful reader fails."""
    import struct

    import duckdb
    import pytest

    from dataforge import api
    from dataforge.errors import UserError

    raw = bytearray(pa.schema([("instruction", pa.string()), ("ok", pa.bool_())]).serialize().to_pybytes())
    buf = bytes(raw[8:])
    message = arrow_schema._Table(buf, struct.unpack_from("<I", buf, 0)[0])
    for field in message.table(2).tables(1):
        struct.pack_into("<H", raw, 8 + field.vtable + 4 + 2 * 3, 0)  # the slot of `type`
    encoded = base64.b64encode(bytes(raw)).decode()
    assert arrow_schema.fields(encoded.encode()) is None
    path = tmp_path / "d.parquet"
    duckdb.sql(f"COPY (SELECT 'a' AS instruction, true AS ok) TO '{path}' "
               f"(FORMAT parquet, KV_METADATA {{'ARROW:schema': '{encoded}'}})")
    with pytest.raises(Exception):
        pl.read_parquet(path)
    (tmp_path / "r.yaml").write_text("name: p\nsteps:\n  - {id: s, type: source.parquet, path: d.parquet, "
                                     "columns: [instruction, ok]}\noutputs: {d: s}\n")
    with pytest.raises(UserError):
        api.build(tmp_path / "r.yaml", catalog=tmp_path / "c.duckdb")
