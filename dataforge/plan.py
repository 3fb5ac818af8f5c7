"""The planner: from a validated recipe to a checked DAG of steps, between the recipe and the steps.

Planning resolves each step's inputs (the previous step when `from` is left out), orders the
steps (every source first, so no step that calls an LLM runs before every source has been
read), runs each kind's checks, checks the columns each step needs, and fingerprints every
step. Sources are read in full here, so a bad line anywhere in a data file is reported before
anything is built or paid for; a source whose fingerprint (file content + params) is already in
the catalog was checked when it was built and is not read again. The rows read here are handed
to the executor, which does not read the file a second time. A source DuckDB can read itself is
not kept at all (an `SqlLoad`): `validate` and `--dry-run` check its file in one scan, and a build
checks it as it stores it, before its first step runs (on a bad line the build stops there, with
the line named and nothing written).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dataforge.errors import RecipeErrors, UserError
from dataforge.hashing import FileHashes, Hashed
from dataforge.recipe.loader import KeyPath, Positions, format_path
from dataforge.steps.base import PlanContext, Step, StepError, StepResult


@dataclass
class Plan:
    """A checked recipe: steps in run order, each step's inputs, columns (when known) and fingerprint."""

    recipe: Any
    path: Path
    sha256: str
    positions: Positions
    order: list[Step]
    inputs: dict[str, list[str]]
    columns: dict[str, list[str] | None]
    fingerprints: dict[str, str]
    index: dict[str, int] = field(default_factory=dict)
    file_hashes: FileHashes = field(default_factory=FileHashes)
    """Source files' hashes: those the catalog remembered, and those planning computed (`new`: the
    build records them)."""
    prepared: dict[str, Any] = field(default_factory=dict)
    """What planning kept of each source it read, by step id: its rows (a `StepResult`), or an
    `SqlLoad` (rows left in the file) that the build stores straight from the file before its first
    step runs."""

    def context(self, catalog_path: Path | None, for_build: bool = False) -> PlanContext:
        return PlanContext(recipe_path=self.path, seed=self.recipe.seed, catalog_path=catalog_path,
                           llm=self.recipe.llm, for_build=for_build, file_hashes=self.file_hashes)

    def locate(self, err: StepError) -> UserError:
        """Turn a step's error into one that names file:line:col and the key path."""
        return locate(err, self.index, self.positions, self.path)

    def descendants(self, step_id: str) -> set[str]:
        out = {step_id}
        for s in self.order:
            if any(p in out for p in self.inputs[s.id]):
                out.add(s.id)
        return out


def locate(err: StepError, index: dict[str, int], positions: Positions, path: Path) -> UserError:
    i = index.get(err.step_id)
    kp: KeyPath = ("steps", i) if i is not None else ()
    if err.recipe_key is not None:
        kp = err.recipe_key
    elif err.field_name and i is not None:
        kp += (err.field_name,)
    line, col = positions.find(kp) or (None, None)
    return UserError(err.message, file=str(path), line=line, col=col, path=format_path(kp) or None)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def step_fingerprint(step: Step, ctx: PlanContext, parents: list[str]) -> str:
    """Hash of the step's type, kind version, canonical params, seed, extra inputs and parents' fingerprints."""
    payload = {
        "type": step.type,
        "kind_version": step.kind_version,
        "params": step.params(),
        "seed": ctx.seed,
        "extra": step.fingerprint_extra(ctx),
        "inputs": parents,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def make_plan(recipe: Any, path: Path, sha: str, pos: Positions, catalog_path: Path | None,
              for_build: bool = False) -> Plan:
    """Check the recipe's DAG and every step; raise `RecipeErrors` listing every located problem.
    `for_build`: the plan is for a build, which checks each `SqlLoad` source as it stores it."""
    file = str(path)
    errors: list[UserError] = []

    def err(message: str, kp: KeyPath) -> None:
        line, col = pos.find(kp) or (None, None)
        errors.append(UserError(message, file=file, line=line, col=col, path=format_path(kp)))

    steps: list[Step] = list(recipe.steps)
    index = _index(steps, err)
    inputs = _inputs(steps, index, err)
    seen: dict[str, str] = {}
    for name, sid in recipe.outputs.items():
        if sid not in index:
            err(f"output {name!r} names unknown step {sid!r}; steps: {', '.join(index)}", ("outputs", name))
        if name.lower() in seen:  # SQL names ignore case: the two would be one view
            err(f"output {name!r} differs from output {seen[name.lower()]!r} only in case, and SQL names ignore "
                "case (both would be one view); rename one", ("outputs", name))
        seen.setdefault(name.lower(), name)
    if errors:
        raise RecipeErrors(errors)
    order = _toposort(steps, inputs, index, err)
    if errors:
        raise RecipeErrors(errors)

    stored, known = _catalog_state(catalog_path)
    plan = Plan(recipe=recipe, path=path, sha256=sha, positions=pos, order=order, inputs=inputs,
                columns={}, fingerprints={}, index=index, file_hashes=FileHashes(known=known))
    ctx = plan.context(catalog_path, for_build)
    for s in order:
        if not _check_step(plan, s, ctx, stored, errors, err):
            plan.columns[s.id] = None
    if errors:
        raise RecipeErrors(errors)
    return plan


def _check_step(plan: Plan, s: Step, ctx: PlanContext, stored: Callable[[str], list[str] | None],
                errors: list[UserError], err: Callable[[str, KeyPath], None]) -> bool:
    """Check one step, fingerprint it and record its columns; False when it has an error."""
    i = plan.index[s.id]
    parents = plan.inputs[s.id]
    try:
        s.check(ctx)
        if all(p in plan.fingerprints for p in parents):  # else an input failed: its error is reported
            plan.fingerprints[s.id] = step_fingerprint(s, ctx, [plan.fingerprints[p] for p in parents])
        if s.is_source:
            fp = plan.fingerprints[s.id]
            cols = stored(fp)
            if cols is None:
                prepared = s.prepare(ctx)  # type: ignore[attr-defined]  # rows, or an `SqlLoad` (no rows kept)
                plan.prepared[s.id] = prepared
                cols = prepared.df.columns if isinstance(prepared, StepResult) else prepared.columns
            plan.columns[s.id] = [c for c in cols if c != "id"]
            return True
        in_cols = [plan.columns.get(p) for p in parents]
        if in_cols and in_cols[0] is not None:
            missing = [c for c in s.required_columns() if c not in in_cols[0]]
            if missing:
                field = next((f for f in map(s.column_field, missing) if f), None)
                err(f"input from {parents[0]!r} lacks column(s) {', '.join(map(repr, missing))}; "
                    f"it has: {', '.join(in_cols[0])}", ("steps", i, field) if field else ("steps", i))
                return False
        plan.columns[s.id] = s.output_columns(in_cols)
        return True
    except StepError as e:
        errors.append(plan.locate(e))
        plan.fingerprints.pop(s.id, None)
        return False


def _catalog_state(catalog_path: Path | None) -> tuple[Callable[[str], list[str] | None], dict[str, Hashed]]:
    """The columns of a step output already stored in the catalog under a fingerprint (or None),
    and the source files' hashes the catalog remembers."""
    if catalog_path is None or not Path(catalog_path).is_file():
        return (lambda fp: None), {}
    from dataforge.catalog import query as q

    try:
        tables, known = q.planning_state(Path(catalog_path))
    except UserError:
        return (lambda fp: None), {}  # not a catalog (yet): the build says so when it opens it
    return (lambda fp: q.output_columns(Path(catalog_path), tables[fp]) if fp in tables else None), known


def _index(steps: list[Step], err) -> dict[str, int]:
    index: dict[str, int] = {}
    folded: dict[str, str] = {}
    for i, s in enumerate(steps):
        if s.id in index:
            err(f"duplicate step id {s.id!r} (first used by steps[{index[s.id]}])", ("steps", i, "id"))
            continue
        if s.id.lower() in folded:  # a `transform.sql` query names its inputs as tables, and SQL ignores case
            other = folded[s.id.lower()]
            err(f"step id {s.id!r} differs from {other!r} (steps[{index[other]}]) only in case, and SQL names "
                "ignore case (a transform.sql query could not tell them apart); rename one", ("steps", i, "id"))
        folded.setdefault(s.id.lower(), s.id)
        index[s.id] = i
    return index


def _inputs(steps: list[Step], index: dict[str, int], err) -> dict[str, list[str]]:
    """Each step's input ids: its `from`, else the previous step's id (sources take none)."""
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
    return inputs


class _Cycle(Exception):
    pass


def _toposort(steps: list[Step], inputs: dict[str, list[str]], index: dict[str, int], err) -> list[Step]:
    """Steps in run order: every source first (in recipe order), then the rest depth-first."""
    by_id = {s.id: s for s in steps}
    state: dict[str, int] = {}
    order: list[Step] = [s for s in steps if s.is_source]
    state.update({s.id: 2 for s in order})

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
