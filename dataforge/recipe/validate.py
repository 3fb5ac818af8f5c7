"""Load a recipe file, validate it and its DAG, and point every problem at file:line:col."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dataforge.errors import RecipeErrors, UserError
from dataforge.recipe.loader import KeyPath, Positions, format_path, load_yaml, substitute_vars
from dataforge.recipe.model import RecipeBase, recipe_model, step_types
from dataforge.steps.base import PlanContext, Step, StepError


@dataclass
class Plan:
    """A validated recipe: steps in run order, each step's inputs and (when known) columns."""

    recipe: RecipeBase
    path: Path
    sha256: str
    positions: Positions
    order: list[Step]
    inputs: dict[str, list[str]]
    columns: dict[str, list[str] | None]
    index: dict[str, int] = field(default_factory=dict)

    def locate(self, err: StepError) -> UserError:
        """Turn a step's error into one that names file:line:col and the key path."""
        i = self.index.get(err.step_id)
        path: KeyPath = ("steps", i) if i is not None else ()
        if err.field_name and i is not None:
            path += (err.field_name,)
        line, col = self.positions.find(path) or (None, None)
        return UserError(err.message, file=str(self.path), line=line, col=col, path=format_path(path) or None)

    def descendants(self, step_id: str) -> set[str]:
        out = {step_id}
        for s in self.order:
            if any(p in out for p in self.inputs[s.id]):
                out.add(s.id)
        return out


def _clean_loc(loc: tuple, data: Any) -> KeyPath:
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


def _message(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"unknown step type {tag!r}; valid types: {', '.join(step_types())}"
    if err["type"] == "union_tag_not_found":
        return f"missing `type`; valid types: {', '.join(step_types())}"
    if err["type"] == "extra_forbidden":
        return "unknown field (not a parameter of this step/section)"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None,
                catalog_path: Path | None = None) -> Plan:
    """Parse, validate and plan a recipe. Raises `RecipeErrors` listing every located problem."""
    path = Path(path)
    data, pos = load_yaml(path)
    file = str(path)
    if not isinstance(data, dict):
        raise UserError("a recipe must be a mapping with name, steps and outputs", file=file, line=1, col=1)
    variables = data.get("vars") or {}
    if not isinstance(variables, dict):
        line, col = pos.find(("vars",)) or (None, None)
        raise UserError("must be a mapping of names to values", file=file, line=line, col=col, path="vars")
    variables = {**variables, **(overrides or {})}
    data = {k: (v if k == "vars" else substitute_vars(v, variables, pos, (k,))) for k, v in data.items()}
    data["vars"] = variables

    Recipe = recipe_model()
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            kp = _clean_loc(err["loc"], data)
            if err["type"] == "union_tag_invalid":
                kp += ("type",)  # point at the bad value, not at the step
            line, col = pos.find(kp) or (None, None)
            errors.append(UserError(_message(err), file=file, line=line, col=col, path=format_path(kp) or None))
        raise RecipeErrors(errors) from None

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    plan = _plan(recipe, path, sha, pos, catalog_path)
    return plan


def _plan(recipe: Any, path: Path, sha: str, pos: Positions, catalog_path: Path | None) -> Plan:
    file = str(path)
    errors: list[UserError] = []

    def err(message: str, kp: KeyPath) -> None:
        line, col = pos.find(kp) or (None, None)
        errors.append(UserError(message, file=file, line=line, col=col, path=format_path(kp)))

    steps: list[Step] = list(recipe.steps)
    index: dict[str, int] = {}
    for i, s in enumerate(steps):
        if s.id in index:
            err(f"duplicate step id {s.id!r} (first used by steps[{index[s.id]}])", ("steps", i, "id"))
        else:
            index[s.id] = i

    inputs: dict[str, list[str]] = {}
    for i, s in enumerate(steps):
        ins = s.inputs()
        if s.is_source and ins:
            err(f"{s.type} is a source and takes no `from`", ("steps", i, "from"))
            ins = []
        elif not s.is_source and s.from_ is None:
            if i == 0:
                err("the first step must be a source or name its input with `from`", ("steps", i))
                inputs[s.id] = []
                continue
            else:
                ins = [steps[i - 1].id]
        for ref in ins:
            if ref not in index:
                err(f"unknown step {ref!r} in `from`; steps: {', '.join(index)}", ("steps", i, "from"))
            elif ref == s.id:
                err("a step cannot read its own output", ("steps", i, "from"))
        n = len(ins)
        if not s.is_source and not (s.min_inputs <= n <= s.max_inputs):
            want = str(s.min_inputs) if s.min_inputs == s.max_inputs else f"{s.min_inputs}-{s.max_inputs}"
            err(f"{s.type} takes {want} input(s), got {n}", ("steps", i, "from"))
        inputs[s.id] = [r for r in ins if r in index and r != s.id]

    for name, sid in recipe.outputs.items():
        if sid not in index:
            err(f"output {name!r} names unknown step {sid!r}; steps: {', '.join(index)}", ("outputs", name))
    if errors:
        raise RecipeErrors(errors)

    order = _toposort(steps, inputs, index, err)
    if errors:
        raise RecipeErrors(errors)

    ctx = PlanContext(recipe_path=path, seed=recipe.seed, catalog_path=catalog_path, llm=recipe.llm)
    columns: dict[str, list[str] | None] = {}
    plan = Plan(recipe=recipe, path=path, sha256=sha, positions=pos, order=order, inputs=inputs,
                columns=columns, index=index)
    for s in order:
        i = index[s.id]
        try:
            s.check(ctx)
        except StepError as e:
            errors.append(plan.locate(e))
            columns[s.id] = None
            continue
        in_cols = [columns.get(p) for p in inputs[s.id]]
        if in_cols and in_cols[0] is not None:
            missing = [c for c in s.required_columns() if c not in in_cols[0]]
            if missing:
                err(f"input from {inputs[s.id][0]!r} lacks column(s) {', '.join(map(repr, missing))}; "
                    f"it has: {', '.join(in_cols[0])}", ("steps", i))
        try:
            columns[s.id] = s.output_columns(in_cols)
        except StepError as e:
            errors.append(plan.locate(e))
            columns[s.id] = None
    if errors:
        raise RecipeErrors(errors)
    return plan


def _toposort(steps: list[Step], inputs: dict[str, list[str]], index: dict[str, int], err) -> list[Step]:
    by_id = {s.id: s for s in steps}
    state: dict[str, int] = {}
    order: list[Step] = []

    def visit(sid: str, trail: list[str]) -> None:
        if state.get(sid) == 2:
            return
        if state.get(sid) == 1:
            cycle = trail[trail.index(sid):] + [sid]
            err(f"cycle: {' -> '.join(cycle)}", ("steps", index[sid], "from"))
            raise _Cycle
        state[sid] = 1
        for p in inputs[sid]:
            visit(p, trail + [sid])
        state[sid] = 2
        order.append(by_id[sid])

    try:
        for s in steps:
            visit(s.id, [])
    except _Cycle:
        return []
    return order


class _Cycle(Exception):
    pass
