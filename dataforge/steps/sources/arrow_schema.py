"""The Arrow types a Parquet file's writer recorded (its `ARROW:schema` footer entry), read without
pyarrow: importing it costs a Parquet build ~0.2 s and ~45 MiB.

The entry is a base64 Arrow IPC message whose body is a flatbuffer `Schema` (Arrow's
`format/Schema.fbs` and `Message.fbs`). What the reader answers is what the Parquet fast path asks:
each top-level field's name, and whether its type (or, dictionary-encoded, its value type) is one
of the plain types DuckDB reads exactly as the polars path does. Anything it does not follow makes
it answer None, and the caller asks pyarrow.

A damaged entry is refused whole, as Arrow's readers refuse the file: every table, vector and string
is checked as flatbuffers' verifier checks it (inside the buffer, aligned, strings NUL-terminated),
and each type's enums, integer widths, decimal precision and number of children as Arrow requires.
What it does not repeat are pyarrow's rarer checks on types a fast path never reads (an extension
type's storage, say); `parquet_fields` also holds the names and plain types to the file's own
Parquet schema, so damage must agree with the file's columns to get through.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

from dataforge.sqlquote import quote_literal

# Tags of Arrow's `Type` union, and the FloatingPoint precision of a double.
_INT, _FLOAT, _UTF8, _BOOL, _LARGE_UTF8, _UTF8_VIEW = 2, 3, 5, 6, 20, 24
_DOUBLE = 2
_SCHEMA_MESSAGE = 1  # `MessageHeader` tag of a Schema
_V4, _V5 = 3, 4  # the `MetadataVersion`s Arrow readers accept

# What each type's table holds (field id -> kind), so that every byte a reader would look at is
# checked: an entry damaged anywhere is refused whole, as pyarrow and polars refuse it.
_TYPE_FIELDS: dict[int, dict[int, str]] = {
    1: {}, 2: {0: "i", 1: "?"}, 3: {0: "h"}, 4: {}, 5: {}, 6: {}, 7: {0: "i", 1: "i", 2: "i"}, 8: {0: "h"},
    9: {0: "h", 1: "i"}, 10: {0: "h", 1: "str"}, 11: {0: "h"}, 12: {}, 13: {}, 14: {0: "h", 1: "ints"},
    15: {0: "i"}, 16: {0: "i"}, 17: {0: "?"}, 18: {0: "h"}, 19: {}, 20: {}, 21: {}, 22: {}, 23: {}, 24: {},
    25: {}, 26: {},
}
_MAX_DEPTH = 64  # nesting of fields, as flatbuffers' verifier bounds it

# The DuckDB type each plain Arrow type reads as: what the file's own Parquet schema must agree with.
_DUCKDB = {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "double": "DOUBLE", "bool": "BOOLEAN"}


class _Damaged(ValueError):
    """The entry is not a well-formed flatbuffer of the expected shape."""


def _span(buf: bytes, at: int, size: int, align: int = 1) -> int:
    """`at`, once `size` bytes from it lie inside `buf` and it is aligned as flatbuffers requires."""
    if at < 0 or size < 0 or at + size > len(buf) or at % align:
        raise _Damaged(f"{size} bytes at {at}")
    return at


class _Table:
    """A flatbuffer table at `pos` of `buf` (little-endian), checked as flatbuffers' verifier checks it:
    its vtable and every field read lie inside the buffer and the table, aligned."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, _span(buf, pos, 4, 4)
        self.vtable = vtable = _span(buf, pos - struct.unpack_from("<i", buf, pos)[0], 4, 2)
        vsize, self.size = struct.unpack_from("<HH", buf, vtable)
        if vsize < 4 or vsize % 2 or self.size < 4:
            raise _Damaged("vtable")
        _span(buf, vtable, vsize)
        _span(buf, pos, self.size)
        self.offsets = struct.unpack_from(f"<{(vsize - 4) // 2}H", buf, vtable + 4)

    def _at(self, field: int, size: int) -> int | None:
        off = self.offsets[field] if field < len(self.offsets) else 0
        if not off:
            return None
        if off + size > self.size:
            raise _Damaged("field past its table")
        return _span(self.buf, self.pos + off, size, size)

    def scalar(self, field: int, fmt: str, default: int) -> int:
        at = self._at(field, struct.calcsize(fmt))
        return default if at is None else struct.unpack_from("<" + fmt, self.buf, at)[0]

    def _vector(self, field: int, item: int) -> tuple[int, int] | None:
        """(where the items start, how many) of a vector (or a string: 1-byte items)."""
        at = self._at(field, 4)
        if at is None:
            return None
        start = _span(self.buf, at + struct.unpack_from("<I", self.buf, at)[0], 4, 4)
        n = struct.unpack_from("<I", self.buf, start)[0]
        return _span(self.buf, start + 4, n * item, min(item, 8)), n

    def table(self, field: int) -> _Table | None:
        at = self._at(field, 4)
        return None if at is None else _Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0])

    def string(self, field: int) -> str | None:
        got = self._vector(field, 1)
        if got is None:
            return None
        start, n = got
        if self.buf[_span(self.buf, start + n, 1)] != 0:  # flatbuffers strings end in a NUL
            raise _Damaged("string")
        return self.buf[start:start + n].decode("utf-8")

    def tables(self, field: int) -> list[_Table]:
        got = self._vector(field, 4)
        if got is None:
            return []
        start, n = got
        slots = (start + 4 * i for i in range(n))
        return [_Table(self.buf, s + struct.unpack_from("<I", self.buf, s)[0]) for s in slots]

    def check(self, fields: dict[int, str]) -> None:
        """Read every field of this kind of table (their values are not needed, only their checks)."""
        for field, kind in fields.items():
            if kind == "str":
                self.string(field)
            elif kind == "ints":
                self._vector(field, 4)
            else:
                self.scalar(field, kind, 0)


def _metadata(owner: _Table, field: int) -> list[tuple[str, str]]:
    pairs = [(kv.string(0), kv.string(1)) for kv in owner.tables(field)]
    if any(k is None or v is None for k, v in pairs):
        raise _Damaged("metadata without a key or value")
    return pairs  # type: ignore[return-value]


# Values a type's fields may take, and how many children it has, as Arrow's readers require them
# (unit and precision enums in range, integer widths, one child for a list or map, ...). `_ENUM_MAX`:
# the largest value of the enum some types hold in their field 0 (a precision, unit or union mode).
_ENUM_MAX = {3: 2, 8: 1, 10: 3, 11: 2, 14: 1, 18: 3}
_ONE_CHILD, _NO_CHILDREN = {12, 16, 17, 21, 25, 26}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 18, 19, 20, 23, 24}


def _check_type(tag: int, of: _Table, children: int) -> None:
    if tag in _ENUM_MAX and not 0 <= of.scalar(0, "h", 0) <= _ENUM_MAX[tag]:
        raise _Damaged("enum")
    if tag == _INT and of.scalar(0, "i", 0) not in (8, 16, 32, 64):
        raise _Damaged("integer width")
    if tag == 9:  # Time: seconds and milliseconds in 32 bits, micro- and nanoseconds in 64
        unit, width = of.scalar(0, "h", 1), of.scalar(1, "i", 32)
        if not 0 <= unit <= 3 or width != (32 if unit < 2 else 64):
            raise _Damaged("time")
    if tag == 7 and not 1 <= of.scalar(0, "i", 0) <= {32: 9, 64: 18, 128: 38, 256: 76}.get(of.scalar(2, "i", 128), 0):
        raise _Damaged("decimal")  # its precision, up to what its width holds
    if tag in (15, 16) and of.scalar(0, "i", 0) < 0:
        raise _Damaged("width")
    if (tag in _ONE_CHILD and children != 1) or (tag in _NO_CHILDREN and children) or (tag == 22 and children != 2):
        raise _Damaged("children")


def _field(f: _Table, depth: int) -> tuple[str | None, str | None]:
    """A field's (name, plain type or None), having checked it and everything under it."""
    if depth > _MAX_DEPTH:
        raise _Damaged("too deep")
    name = f.string(0)
    f.scalar(1, "?", False)
    tag, of = f.scalar(2, "B", 0), f.table(3)
    if tag not in _TYPE_FIELDS or of is None:  # every field has a type: Arrow's readers refuse one without
        raise _Damaged("field type")
    of.check(_TYPE_FIELDS[tag])
    children = [_field(c, depth + 1) for c in f.tables(5)]
    _check_type(tag, of, len(children))
    dictionary = f.table(4)
    if dictionary is not None:
        dictionary.check({0: "q", 2: "?", 3: "h"})
        index = dictionary.table(1)
        if index is None:
            raise _Damaged("dictionary index type")
        index.check(_TYPE_FIELDS[_INT])
        _check_type(_INT, index, 0)
    extension = any(k.startswith("ARROW:extension:") for k, _ in _metadata(f, 6))
    # Nested types, and extension types (their storage may look plain), are the careful reader's.
    return name, None if children or extension else _plain_type(tag, of)


def _plain_type(tag: int, of: _Table) -> str | None:
    """The plain type's name (pyarrow's spelling), or None for any other type."""
    if tag in (_UTF8, _LARGE_UTF8, _UTF8_VIEW):
        return "string"
    if tag == _BOOL:
        return "bool"
    if tag == _FLOAT and of.scalar(0, "h", 0) == _DOUBLE:
        return "double"
    if tag == _INT and of.scalar(1, "?", False) and of.scalar(0, "i", 0) in (32, 64):
        return f"int{of.scalar(0, 'i', 0)}"
    return None


def fields(encoded: bytes) -> list[tuple[str, str | None]] | None:
    """Each top-level field of a base64 `ARROW:schema` entry: (name, plain type or None); None when
    the entry is not a well-formed schema message (anywhere in it) this reader follows."""
    try:
        raw = base64.b64decode(encoded, validate=True)
        start = 8 if raw[:4] == b"\xff\xff\xff\xff" else 4  # continuation marker (Arrow >= 0.15), length
        length = struct.unpack_from("<i", raw, start - 4)[0]
        if length <= 0 or start + length > len(raw):
            return None
        buf = raw[start:start + length]
        message = _Table(buf, _span(buf, struct.unpack_from("<I", buf, 0)[0], 4, 4))
        if message.scalar(0, "h", 0) not in (_V4, _V5) or message.scalar(1, "B", 0) != _SCHEMA_MESSAGE:
            return None
        message.scalar(3, "q", 0)
        _metadata(message, 4)
        schema = message.table(2)
        if schema is None or schema.scalar(0, "h", 0) != 0:  # big-endian data: leave it to pyarrow
            return None
        _metadata(schema, 2)
        schema._vector(3, 8)
        if schema._vector(1, 4) is None:  # a schema lists its fields, even none
            return None
        out = [_field(f, 0) for f in schema.tables(1)]
        if any(name is None for name, _ in out):
            return None
        return out  # type: ignore[return-value]
    except (struct.error, ValueError, RecursionError):  # ValueError: `_Damaged`, bad base64 or UTF-8
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
