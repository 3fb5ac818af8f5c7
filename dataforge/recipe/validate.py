"""Load a recipe file: YAML with positions, variables, the pydantic model; then plan it (`dataforge.plan`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dataforge.errors import UserError
from dataforge.plan import Plan, make_plan
from dataforge.recipe.loader import Positions, load_yaml, substitute_vars
from dataforge.recipe.located import validate_located
from dataforge.recipe.model import recipe_model


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None,
                catalog_path: Path | None = None, for_build: bool = False) -> Plan:
    """Parse, validate and plan a recipe (for a build: see `make_plan`). Raises `RecipeErrors`
    listing every located problem."""
    path = Path(path)
    data, pos = load_yaml(path)
    file = str(path)
    if not isinstance(data, dict):
        raise UserError("a recipe must be a mapping with name, steps and outputs", file=file, line=1, col=1)
    variables = resolve_vars(data.get("vars") or {}, overrides or {}, pos)
    data = {k: (v if k == "vars" else substitute_vars(v, variables, pos, (k,))) for k, v in data.items()}
    data["vars"] = variables
    steps = data.get("steps")
    types = [s.get("type") if isinstance(s, dict) else None for s in steps] if isinstance(steps, list) else None
    recipe = validate_located(recipe_model(types), data, pos)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return make_plan(recipe, path, sha, pos, catalog_path, for_build)


def resolve_vars(declared: Any, overrides: dict[str, Any], pos: Positions) -> dict[str, Any]:
    """The recipe's `vars` with `--var` overrides applied and `${other}` references inside them resolved.

    An override must name a declared variable (a typo would otherwise build on the defaults silently).
    """
    if not isinstance(declared, dict):
        line, col = pos.find(("vars",)) or (None, None)
        raise UserError("must be a mapping of names to values", file=pos.file, line=line, col=col, path="vars")
    unknown = [k for k in overrides if k not in declared]
    if unknown:
        known = ", ".join(sorted(declared)) or "none: add a `vars:` mapping to the recipe"
        raise UserError(f"--var {', '.join(unknown)}: not a variable of {pos.file} (its variables: {known})")
    raw = {**declared, **overrides}
    done: dict[str, Any] = {}

    def value(name: str, trail: tuple[str, ...]) -> Any:
        if name in done:
            return done[name]
        if name in trail:
            line, col = pos.find(("vars", trail[0])) or (None, None)
            cycle = " -> ".join((*trail[trail.index(name):], name))
            raise UserError(f"cyclic variable: {cycle}", file=pos.file, line=line, col=col, path=f"vars.{trail[0]}")
        resolved = {k: v for k, v in done.items()}
        lookup = _LazyVars(raw, resolved, lambda other: value(other, (*trail, name)))
        done[name] = substitute_vars(raw[name], lookup, pos, ("vars", name))
        return done[name]

    for name in raw:
        value(name, ())
    return done


class _LazyVars(dict):
    """A mapping that resolves a variable (and the variables it uses) on first look-up."""

    def __init__(self, raw: dict[str, Any], done: dict[str, Any], resolve):
        super().__init__(done)
        self._raw = raw
        self._resolve = resolve

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __getitem__(self, name: str) -> Any:
        return self._resolve(name)

    def keys(self):  # for the "variables: ..." list of an unknown-variable error
        return self._raw.keys()

    def __iter__(self):
        return iter(self._raw)
