"""Pydantic validation whose errors point at file:line:col and the key path (recipes, mixtures, configs)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dataforge.errors import RecipeErrors, UserError
from dataforge.recipe.loader import KeyPath, Positions, format_path

M = TypeVar("M", bound=BaseModel)


class KeyedValueError(ValueError):
    """Raised by a model validator to point at one of the model's keys (e.g. the `method` line) instead of
    the model itself: `raise KeyedValueError("method nat needs ...", ("method",))`."""

    def __init__(self, message: str, key: KeyPath):
        super().__init__(message)
        self.key = tuple(key)


def validate_located(model: type[M], data: Any, pos: Positions) -> M:
    """`model.model_validate(data)`, raising `RecipeErrors` with every problem located in `pos.file`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            kp = clean_loc(err["loc"], data)
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, KeyedValueError):
                kp += cause.key
            if err["type"] == "union_tag_invalid":
                kp += ("type",)  # point at the bad value, not at the step
            line, col = pos.find(kp) or (None, None)
            errors.append(UserError(message(err), file=pos.file, line=line, col=col, path=format_path(kp) or None))
        raise RecipeErrors(errors) from None


def clean_loc(loc: tuple, data: Any) -> KeyPath:
    """Drop pydantic's union-tag entries from an error location so it matches the YAML tree."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if part == "[key]":
            continue  # a dict key failed validation: the entry's path is enough
        if isinstance(cur, list) and isinstance(part, int):
            out.append(part)
            cur = cur[part] if part < len(cur) else None
        elif isinstance(cur, dict):
            if part in cur:
                out.append(part)
                cur = cur[part]
            elif part == cur.get("type") or (isinstance(part, str) and "." in part and "type" in cur):
                continue  # discriminator tag
            else:
                out.append(part)
                cur = None
        else:
            if isinstance(part, (str, int)) and not (isinstance(part, str) and part.startswith("function-")):
                out.append(part)
            cur = None
    return tuple(out)


def message(err: dict) -> str:
    """A pydantic error's message in our words (unknown step types list the valid ones)."""
    msg = err["msg"]
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        from dataforge.recipe.model import step_types

        if err["type"] == "union_tag_not_found":
            return f"missing `type`; valid types: {', '.join(step_types())}"
        tag = err.get("ctx", {}).get("tag")
        return f"unknown step type {tag!r}; valid types: {', '.join(step_types())}"
    if err["type"] == "extra_forbidden":
        return "unknown field (not a parameter of this step/section)"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg
