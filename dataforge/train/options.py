"""CLI flags -> a pydantic options model, with a bad value reported as the flag that carried it."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dataforge.errors import UserError

M = TypeVar("M", bound=BaseModel)


def from_flags(schema: type[M], /, **flags: Any) -> M:
    """`schema(**flags)` without the flags left unset (None); a validation error becomes `--flag-name: message`."""
    try:
        return schema(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            name = str(err["loc"][0]) if err["loc"] else "options"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"--{name.replace('_', '-')}: {msg}")
        raise UserError("; ".join(lines)) from None
