"""The Arrow types a Parquet file's writer recorded (its `ARROW:schema` footer entry), read without
pyarrow: importing it costs a Parquet build ~0.2 s and ~45 MiB.

The entry is a base64 Arrow IPC message whose body is a flatbuffer `Schema` (Arrow's
`format/Schema.fbs` and `Message.fbs`). Only what the Parquet fast path asks is decoded: each
top-level field's name, and whether its type (or, dictionary-encoded, its value type) is one of
the plain types DuckDB reads exactly as the polars path does. Anything this reader does not follow
makes it answer None, and the caller asks pyarrow.
"""

from __future__ import annotations

import base64
import binascii
import struct
from pathlib import Path

from dataforge.sqlquote import quote_literal

# Tags of Arrow's `Type` union, and the FloatingPoint precision of a double.
_INT, _FLOAT, _UTF8, _BOOL, _LARGE_UTF8, _UTF8_VIEW = 2, 3, 5, 6, 20, 24
_DOUBLE = 2
_SCHEMA_MESSAGE = 1  # `MessageHeader` tag of a Schema

# The DuckDB type each plain Arrow type reads as: what the file's own Parquet schema must agree with.
_DUCKDB = {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "double": "DOUBLE", "bool": "BOOLEAN"}


class _Table:
    """A flatbuffer table at `pos` of `buf` (little-endian; a field absent from the vtable is None)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vsize = struct.unpack_from("<H", buf, self.vtable)[0]

    def _at(self, field: int) -> int | None:
        slot = 4 + 2 * field
        if slot + 2 > self.vsize:
            return None
        off = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return self.pos + off if off else None

    def scalar(self, field: int, fmt: str, default: int) -> int:
        at = self._at(field)
        return default if at is None else struct.unpack_from("<" + fmt, self.buf, at)[0]

    def _target(self, field: int) -> int | None:
        at = self._at(field)
        return None if at is None else at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, field: int) -> _Table | None:
        at = self._target(field)
        return None if at is None else _Table(self.buf, at)

    def string(self, field: int) -> str | None:
        at = self._target(field)
        if at is None:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        if at + 4 + n > len(self.buf):
            raise ValueError("string past the end")
        return self.buf[at + 4:at + 4 + n].decode("utf-8")

    def tables(self, field: int) -> list[_Table]:
        at = self._target(field)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        if at + 4 + 4 * n > len(self.buf):
            raise ValueError("vector past the end")
        slots = (at + 4 + 4 * i for i in range(n))
        return [_Table(self.buf, s + struct.unpack_from("<I", self.buf, s)[0]) for s in slots]


def _plain_type(field: _Table) -> str | None:
    """The plain type's name (pyarrow's spelling), or None for any other type."""
    if field.tables(5):  # children: a nested type
        return None
    for kv in field.tables(6):  # an extension type (its storage may look plain) is the careful path's
        if (kv.string(0) or "").startswith("ARROW:extension:"):
            return None
    tag, of = field.scalar(2, "B", 0), field.table(3)
    if tag in (_UTF8, _LARGE_UTF8, _UTF8_VIEW):
        return "string"
    if tag == _BOOL:
        return "bool"
    if tag == _FLOAT and of is not None and of.scalar(0, "h", 0) == _DOUBLE:
        return "double"
    if tag == _INT and of is not None and of.scalar(1, "?", False) and of.scalar(0, "i", 0) in (32, 64):
        return f"int{of.scalar(0, 'i', 0)}"
    return None


def fields(encoded: bytes) -> list[tuple[str, str | None]] | None:
    """Each top-level field of a base64 `ARROW:schema` entry: (name, plain type or None); None when
    the entry is not a schema message this reader follows."""
    try:
        raw = base64.b64decode(encoded, validate=True)
        start = 8 if raw[:4] == b"\xff\xff\xff\xff" else 4  # continuation marker (Arrow >= 0.15), length
        length = struct.unpack_from("<i", raw, start - 4)[0]
        if length <= 0 or start + length > len(raw):
            return None
        buf = raw[start:start + length]
        message = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        if message.scalar(1, "B", 0) != _SCHEMA_MESSAGE:
            return None
        schema = message.table(2)
        if schema is None or schema.scalar(0, "h", 0) != 0:  # big-endian data: leave it to pyarrow
            return None
        out = []
        for f in schema.tables(1):
            name = f.string(0)
            if name is None:
                return None
            out.append((name, _plain_type(f)))
        return out
    except (struct.error, ValueError, UnicodeDecodeError, binascii.Error, IndexError):
        return None


def parquet_fields(path: Path) -> list[tuple[str, str | None]] | None:
    """`fields` of the Parquet file at `path`, checked against the file's own Parquet schema as DuckDB
    reads it (the same top-level names in the same order, each plain column read as its type); None
    when the file has no `ARROW:schema` (writers other than Arrow's), the two disagree, or DuckDB
    cannot read the footer."""
    import duckdb

    from dataforge.memdb import cursor

    con = cursor()
    try:
        entries = con.execute("SELECT value FROM parquet_kv_metadata(?) WHERE key = 'ARROW:schema'",
                              [str(path)]).fetchall()
        if len(entries) != 1:
            return None
        got = fields(entries[0][0])
        if got is None:
            return None
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(path))}, "
                                f"hive_partitioning = false)").fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()
    if [name for name, _ in got] != [row[0] for row in described]:
        return None
    if any(kind is not None and _DUCKDB[kind] != row[1] for (_, kind), row in zip(got, described)):
        return None
    return got
