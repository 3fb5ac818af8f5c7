"""Names and strings quoted into DuckDB SQL text: the one place every module that writes SQL takes them from."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """`name` as a double-quoted identifier (inner double quotes doubled), whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: object) -> str:
    """`value` (as text) as a single-quoted string literal (inner single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"
