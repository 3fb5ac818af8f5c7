"""CLI flags -> a pydantic options model, with a bad value reported as the flag that carried it."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError

from dataforge.errors import UserError

M = TypeVar("M", bound=BaseModel)


def _torch_device(value: str | None) -> str | None:
    """A `--device` torch can use here, checked before any model is loaded; None: the default."""
    if value is None:
        return None
    try:
        import torch
    except ImportError:  # the missing `train` extra is reported with its install line later
        return value
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{value!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{value!r}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{value!r}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    elif dev.type != "cpu":  # mps, xpu, ...: torch parses the name whether or not it is built for it or has one
        try:
            torch.empty(0, device=dev)
        except Exception as e:  # noqa: BLE001 - each backend fails its own way (assert, NotImplementedError, ...)
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"{value!r}: torch cannot use this device here ({why[:200]})") from None
    return value


Device = Annotated[str | None, AfterValidator(_torch_device)]
"""A torch device flag (`--device`), refused at once when torch cannot use it."""


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
