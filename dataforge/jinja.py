"""Sandboxed Jinja2 templates, shared by prompts, Flan templates and export-time templating."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

if TYPE_CHECKING:
    import polars as pl

MAX_RANGE = 10_000
"""Longest `range()` a template may make (per render)."""
MAX_ITEMS = 1_000_000
"""Longest string or list a template may make with `*` (characters or items)."""
MAX_POWER_BITS = 4_096
"""Largest integer (in bits) a template may make with `**`."""


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() of {len(r):,} numbers; templates may make at most {MAX_RANGE:,}")
    return r


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds on what one expression may allocate: a template such as
    `{{ range(10**9) }}` or `{{ 'x' * 10**10 }}` fails with a template error instead of eating memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):  # type: ignore[override]
        if operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            if right * abs(left).bit_length() > MAX_POWER_BITS:
                raise SecurityError(f"{left} ** {right} is too large for a template")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and _is_int(n) and len(seq) * n > MAX_ITEMS:
                    raise SecurityError(f"repeating a {type(seq).__name__} {n:,} times makes "
                                        f"{len(seq) * n:,} items; templates may make at most {MAX_ITEMS:,}")
        return super().call_binop(context, operator, left, right)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@functools.cache
def environment() -> ImmutableSandboxedEnvironment:
    """One sandboxed environment: no access to Python internals, undefined variables are errors,
    and `range`, `*` and `**` bounded (see `MAX_RANGE`, `MAX_ITEMS`, `MAX_POWER_BITS`)."""
    env = _BoundedSandbox(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    env.globals["range"] = _bounded_range
    return env


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Compile (and cache) a template; raises `jinja2.TemplateSyntaxError` with a line number."""
    return environment().from_string(source)


def template_variables(source: str) -> set[str]:
    """Names a template reads from its context (to check required columns before running)."""
    from jinja2 import meta

    return meta.find_undeclared_variables(environment().parse(source))


# Column types whose polars string cast equals Jinja's `str(value)`.
_PLAIN_DTYPES = frozenset({"String", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"})


@functools.lru_cache(maxsize=1024)
def _plain_parts(source: str) -> tuple[tuple[str, str], ...] | None:
    """`("text", s)` / `("name", column)` pieces when the template is text and bare `{{ name }}`s only."""
    from jinja2 import nodes

    parts: list[tuple[str, str]] = []
    for node in environment().parse(source).body:
        if not isinstance(node, nodes.Output):
            return None
        for n in node.nodes:
            if isinstance(n, nodes.TemplateData):
                parts.append(("text", n.data))
            elif isinstance(n, nodes.Name) and n.ctx == "load":
                parts.append(("name", n.name))
            else:
                return None
    return tuple(parts)


def render_column(df: "pl.DataFrame", source: str) -> "pl.Series":
    """Render the template `source` once per row of `df` (columns are the variables), as a string Series.

    Plain templates (text and `{{ column }}` of string or integer columns) become one polars
    `concat_str`, byte-identical to Jinja's output (a null renders as `None`, as in Jinja);
    anything else (filters, loops, conditionals, other column types) renders row by row in the
    sandbox.
    """
    import polars as pl

    parts = _plain_parts(source)
    plain = parts is not None and all(
        k == "text" or (v in df.columns and df.schema[v].base_type().__name__ in _PLAIN_DTYPES) for k, v in parts)
    if plain:
        names = [v for k, v in parts if k == "name"]
        if not names:
            return pl.Series("rendered", ["".join(v for _, v in parts)] * df.height, dtype=pl.Utf8)
        exprs = [pl.lit(v, dtype=pl.Utf8) if k == "text" else pl.col(v).cast(pl.Utf8).fill_null("None")
                 for k, v in parts]
        return df.select(pl.concat_str(exprs).alias("rendered"))["rendered"]
    template = compile_template(source)
    used = sorted(template_variables(source) & set(df.columns))
    if not used:  # a template that reads no column (`{{ 'abc' }}`) still renders once per row
        return pl.Series("rendered", [template.render() for _ in range(df.height)], dtype=pl.Utf8)
    return pl.Series("rendered", [template.render(row) for row in df.select(used).iter_rows(named=True)],
                     dtype=pl.Utf8)
