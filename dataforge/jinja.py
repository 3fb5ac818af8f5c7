"""Sandboxed Jinja2 templates, shared by prompts, Flan templates and export-time templating."""

from __future__ import annotations

import functools

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


@functools.cache
def environment() -> ImmutableSandboxedEnvironment:
    """One sandboxed environment: no access to Python internals, undefined variables are errors."""
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                                         autoescape=False)


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Compile (and cache) a template; raises `jinja2.TemplateSyntaxError` with a line number."""
    return environment().from_string(source)


def template_variables(source: str) -> set[str]:
    """Names a template reads from its context (to check required columns before running)."""
    from jinja2 import meta

    return meta.find_undeclared_variables(environment().parse(source))
