"""Prompt templates shipped with dataforge (Jinja, rendered in the sandbox of `dataforge.jinja`)."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def load(name: str) -> str:
    """The source of a shipped template, e.g. `load("self_instruct/bootstrap.jinja")`."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
