"""Annotated field types shared by config models (step kinds, parsers, mixtures)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"not a valid regex: {e}") from None
    return value


Regex = Annotated[str, AfterValidator(_compiles)]
"""A Python regular expression, checked when the config is validated."""
