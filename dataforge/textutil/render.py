"""Render a Jinja template (the shared sandboxed environment) for every row of a frame.

Templates that only substitute columns into fixed text (`"Q: {{ question }}\\nA:"`) are
compiled into one polars string concatenation - no Python per row; anything else (filters,
conditionals, loops) is rendered row by row with the sandboxed Jinja template.
"""

from __future__ import annotations

import functools
from typing import Any

import polars as pl
from jinja2 import nodes

from dataforge.jinja import compile_template, environment

_FAST_DTYPES = (pl.Utf8, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


@functools.lru_cache(maxsize=1024)
def plain_parts(source: str) -> tuple[tuple[bool, str], ...] | None:
    """`(is_variable, text)` pieces when the template only substitutes names into text; else None."""
    try:
        tree = environment().parse(source)
    except Exception:
        return None
    parts: list[tuple[bool, str]] = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append((False, child.data))
            elif isinstance(child, nodes.Name) and child.ctx == "load":
                parts.append((True, child.name))
            else:
                return None
    return tuple(parts)


def render_column(df: pl.DataFrame, source: str, constants: dict[str, Any] | None = None,
                  name: str = "rendered") -> pl.Series:
    """The template rendered once per row of `df`; row columns and `constants` are its variables.

    Raises `jinja2.TemplateError` (undefined variable, syntax error) like Jinja itself.
    """
    constants = constants or {}
    parts = plain_parts(source)
    if parts is not None and all(
        (not var) or (text in df.columns and df.schema[text] in _FAST_DTYPES) or
        (text not in df.columns and isinstance(constants.get(text), str))
        for var, text in parts
    ):
        if not parts:
            return pl.Series(name, [""] * df.height, dtype=pl.Utf8)
        exprs = [pl.lit(text, dtype=pl.Utf8) if not var else
                 (pl.col(text).cast(pl.Utf8).fill_null("None") if text in df.columns else pl.lit(constants[text]))
                 for var, text in parts]
        return df.select(pl.concat_str(exprs).alias(name)).to_series()
    template = compile_template(source)
    return pl.Series(name, [template.render({**constants, **row}) for row in df.iter_rows(named=True)],
                     dtype=pl.Utf8)
