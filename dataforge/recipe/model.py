"""The pydantic model of a recipe. The step union is built from the registry of step kinds."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dataforge.llm.config import LLMConfig
from dataforge.steps.base import Step, load_kinds, load_registry

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _check_output_name(name: str) -> str:
    import re

    from dataforge.catalog.store import RESERVED_NAMES

    if not re.fullmatch(IDENT, name) or len(name) > 63:
        raise ValueError(f"output name {name!r} is not a plain SQL identifier "
                         "(letters, digits and _, not starting with a digit, at most 63 chars)")
    if name.startswith("_") or name.lower() in RESERVED_NAMES or _is_sql_keyword(name):
        raise ValueError(f"output name {name!r} is reserved; pick another")
    return name


# Validated per key, so an error points at the offending entry of `outputs`.
OutputName = Annotated[str, AfterValidator(_check_output_name)]


class RecipeBase(BaseModel):
    """Top-level recipe fields; `steps` is added by `recipe_model()`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", max_length=128)
    """Recipe name, recorded with every build."""
    description: str | None = None
    """What the recipe makes, for people."""
    seed: int = 0
    """Seed for every random choice (sampling, templates, symbols); same seed, same bytes."""
    vars: dict[str, Any] = Field(default_factory=dict)
    """Variables substituted into strings as `${name}`; `--var name=value` overrides them."""
    llm: LLMConfig = Field(default_factory=LLMConfig)
    """Defaults for every LLM step; a step's own `llm:` overrides them field by field."""
    outputs: dict[OutputName, str] = Field(default_factory=dict)
    """Dataset name -> step id. Each becomes a versioned dataset and a SQL view of that name."""
    executor: Literal["local", "ray"] | None = None
    """Where steps run: `local` (this process) or `ray` (row-wise steps across a Ray cluster; same
    datasets). `--executor` and `$DATAFORGE_EXECUTOR` override it; not part of any fingerprint."""


@functools.cache
def _keywords() -> frozenset[str]:
    from dataforge.memdb import cursor

    con = cursor()
    try:
        rows = con.sql("select keyword_name from duckdb_keywords() where keyword_category = 'reserved'").fetchall()
    finally:
        con.close()
    return frozenset(r[0].lower() for r in rows)


def _is_sql_keyword(name: str) -> bool:
    return name.lower() in _keywords()


def recipe_model(types: list[Any] | None = None) -> type[RecipeBase]:
    """The `Recipe` model with `steps` typed as the union of the step kinds of these YAML `type`s
    (only their modules are imported), or of every registered kind."""
    registry = load_registry() if types is None else load_kinds(types)
    # Keyed on the registered kinds: a kind registered later (a plugin, a test) is not missed.
    return _recipe_model(tuple(sorted(set(registry.values()), key=lambda c: c.__name__)))


@functools.cache
def _recipe_model(kinds: tuple[type[Step], ...]) -> type[RecipeBase]:
    step_union = Annotated[Union[kinds], Field(discriminator="type")]  # type: ignore[valid-type]

    class Recipe(RecipeBase):
        """A dataforge recipe: sources and steps compiled into catalog datasets."""

        steps: list[step_union] = Field(min_length=1)  # type: ignore[valid-type]
        """The steps, in order; each reads the previous one unless it says `from`."""

    return Recipe


def step_types() -> list[str]:
    return sorted(load_registry())

