"""The step contract: every step kind is a pydantic model registered by its YAML `type`.

A kind subclasses `Step`, declares `type: Literal["kind.name"]`, its params as
documented fields, the columns it needs and adds, and implements `run`.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from dataforge.errors import UserError

if TYPE_CHECKING:
    import polars as pl
    from dataforge.catalog.handle import StepHandle
    from dataforge.hashing import FileHashes
    from dataforge.llm.config import LLMConfig
    from dataforge.progress import Progress
else:
    from dataforge.lazy import polars as pl

REGISTRY: dict[str, type["Step"]] = {}

# Columns the executor manages; steps never declare them.
ID = "id"
PARENT = "_parent_id"

LLM_ERROR = "llm_error"
"""Rejection reason of a row whose LLM call still failed after its retries; a later build retries it."""


@dataclass
class StepResult:
    """What `Step.run` returns.

    `rejections` has columns `row_id, reason, score, detail` (score/detail may be null);
    `lineage` has `row_id, parent_id` for outputs derived from several rows; `notes` is what the
    step has to say about its run (stored with its `steps` row and printed after it).
    """

    df: pl.DataFrame
    rejections: pl.DataFrame | None = None
    lineage: pl.DataFrame | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    rows_read: int | None = None
    """Rows a source read, before its `limit` and `sample` (its `rows_in`); None for other steps,
    whose `rows_in` counts their input rows."""


@dataclass
class PlanContext:
    """What a step may consult while the recipe is validated (before anything runs)."""

    recipe_path: Path
    seed: int
    catalog_path: Path | None = None
    llm: "LLMConfig | None" = None
    for_build: bool = False
    """Planning for a build, which stores every `SqlLoad` before its first step runs and checks the
    file as it stores it: a source may then leave its full-file check to that store."""
    file_hashes: FileHashes | None = None
    """The source files' hashes the catalog remembers (and those this plan computes)."""

    @property
    def recipe_dir(self) -> Path:
        return self.recipe_path.parent

    def file_sha256(self, path: Path) -> str:
        """A file's sha256 for a fingerprint, not read again when the catalog remembers it unchanged."""
        from dataforge.hashing import file_sha256

        return self.file_hashes.sha256(path) if self.file_hashes is not None else file_sha256(path)

    def resolve(self, path: str | Path) -> Path:
        """A path from the recipe, relative to the recipe file unless absolute."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.recipe_dir / p)


@dataclass
class RunContext(PlanContext):
    """What a running step gets: identity, seed, its inputs' step ids, a narrow catalog handle, progress."""

    step_id: str = ""
    build_id: str = ""
    fingerprint: str = ""
    input_ids: list[str] = field(default_factory=list)
    """The step ids of the inputs, in order (also when the recipe left `from` implicit)."""
    catalog: "StepHandle | None" = None
    """What the step may do with the catalog: read datasets, use the LLM call log (never write outputs)."""
    progress: "Progress | None" = None
    log: Callable[[str], None] = print
    retry_failed: bool = False
    """The build asks again the LLM calls that failed in earlier builds (`build --retry-failed`)."""
    llm_summary: bool = True
    """Whether the step's LLM session logs its summary line; a Ray slice's does not (the driver sums them)."""


def check_text_columns(step_id: str, df: pl.DataFrame, columns: dict[str, str]) -> None:
    """Raise a `StepError` at the field named for a column when a column (`{column: field}`) holds lists or structs, not text.

    Text rules cast their column to a string; a nested column cannot be cast, and without this check
    the cast failed mid-run as an internal error.
    """
    for column, field_name in columns.items():
        dtype = df.schema.get(column)
        if dtype is not None and dtype.is_nested():
            raise StepError(step_id, field_name, f"column {column!r} holds {dtype} values, not text; compare a "
                                                 f"text column (or make one first, e.g. with a transform.sql step)")


def rejections_frame(row_ids: list[str], reason: str | list[str], score: list[float | None] | None = None,
                     detail: list[str | None] | None = None) -> pl.DataFrame:
    """Build a rejections frame; `reason` may be one string for all rows."""
    n = len(row_ids)
    return pl.DataFrame(
        {
            "row_id": row_ids,
            "reason": [reason] * n if isinstance(reason, str) else reason,
            "score": score if score is not None else [None] * n,
            "detail": detail if detail is not None else [None] * n,
        },
        schema={"row_id": pl.Utf8, "reason": pl.Utf8, "score": pl.Float64, "detail": pl.Utf8},
    )


class Step(BaseModel):
    """Base of every step kind."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    """Unique id of this step; other steps refer to it in `from`, outputs in `outputs`."""
    type: str
    """Step kind; picks the class from the registry."""
    from_: str | list[str] | None = Field(default=None, alias="from")
    """Input step id(s). Default: the previous step in the list. Sources take no input."""
    description: str | None = None
    """Free text for people; not part of the fingerprint."""

    kind_version: ClassVar[str] = "1"
    """Bump when the kind's code changes its output: old fingerprints stop matching."""
    is_source: ClassVar[bool] = False
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int] = 1
    new_rows: ClassVar[bool] = False
    """True when output rows are new examples: the executor re-hashes `id` and records lineage."""
    row_wise: ClassVar[bool] = False
    """True when each input row's output (rows, rejections) depends only on that row, the seed and the
    params, never on other rows or their order: a scale-out executor may then run the step over slices of
    its input and concatenate the results in input order. False (the default) whenever the kind looks
    across rows (dedup, caps, exemplars drawn from other rows, per-task maps); kinds whose params decide
    it override `is_row_wise`."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        ann = cls.model_fields.get("type")
        if ann is None or get_origin(ann.annotation) is None:
            return
        for name in get_args(ann.annotation):
            if name in REGISTRY and REGISTRY[name].__qualname__ != cls.__qualname__:
                raise TypeError(f"step type {name!r} registered twice")
            REGISTRY[name] = cls

    # -- declarations -------------------------------------------------------
    def inputs(self) -> list[str]:
        """Ids of the steps this one reads."""
        if self.from_ is None:
            return []
        return [self.from_] if isinstance(self.from_, str) else list(self.from_)

    def required_columns(self) -> list[str]:
        """Columns that must exist in the (first) input."""
        return []

    def column_field(self, column: str) -> str | None:
        """The field that names `column`, for an error about it to point at: one whose value is the
        name (or a list or mapping holding it), or a template reading it (`{{ column }}`); None if none."""
        template = re.compile(r"\{[{%][^}]*?(?<![\w.])" + re.escape(column) + r"(?!\w)")
        for name in type(self).model_fields:
            if name in ("id", "type", "from_"):
                continue
            v = getattr(self, name)
            if v == column or (isinstance(v, (list, tuple)) and column in v) or \
                    (isinstance(v, dict) and column in (*v.keys(), *v.values())):
                return name
            if isinstance(v, str) and template.search(v):
                return name
        return None

    def added_columns(self) -> list[str]:
        """Columns this step adds to its input's columns."""
        return []

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        """Columns of the output given the inputs' columns; None when unknown before running."""
        if not inputs or inputs[0] is None:
            return None
        cols = list(inputs[0])
        for c in self.added_columns():
            if c not in cols:
                cols.append(c)
        return cols

    def check(self, ctx: PlanContext) -> None:
        """Checks that need the file system or optional packages; raise `UserError`."""

    def params(self) -> dict[str, Any]:
        """Canonical params: everything that changes the output."""
        return self.model_dump(mode="json", exclude={"id", "from_", "description", "type"})

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        """Extra input to the fingerprint (a source's file hash, say)."""
        return None

    def uses_llm(self) -> bool:
        """True for steps that call an LLM (shown by `--dry-run`, so a curator sees what costs money)."""
        return False

    def is_row_wise(self) -> bool:
        """Whether this step, with these params, is row-wise (see `row_wise`); single-input steps only."""
        return self.row_wise and len(self.inputs()) <= 1

    def accounted_inputs(self, heights: list[int]) -> int:
        """How many input rows this step keeps or drops (`rows_in`); a reference input is not counted."""
        return sum(heights)

    def expected_rows(self, rows_in: int, rejected: int) -> int | None:
        """Rows the output must have, given `rows_in` and the rows rejected; None when free (generators).

        The executor checks it after every run, so no kind can drop a row without a rejection.
        Filters keep or drop each input row; kinds that make new rows override this.
        """
        return None if self.new_rows else rows_in - rejected

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult | pl.DataFrame:
        raise NotImplementedError

    # -- helpers for kinds --------------------------------------------------
    def user_error(self, message: str, field_name: str | None = None) -> UserError:
        """An error about this step, located later by the validator (see `StepError`)."""
        return StepError(self.id, field_name, message)


class StepError(UserError):
    """A step-level problem; the validator adds file/line from the recipe's positions."""

    def __init__(self, step_id: str, field_name: str | None, message: str, *,
                 recipe_key: tuple[str | int, ...] | None = None):
        self.step_id = step_id
        self.field_name = field_name
        self.recipe_key = recipe_key
        """Where the problem is when it is not in the step: a key path from the recipe's top (the
        `llm:` block a step inherits), instead of the step's `field_name`."""
        super().__init__(message)


def load_registry() -> dict[str, type[Step]]:
    """Import every module under `dataforge.steps` so each kind registers itself."""
    import importlib
    import pkgutil

    import dataforge.steps as pkg

    for mod in pkgutil.walk_packages(pkg.__path__, prefix="dataforge.steps."):
        importlib.import_module(mod.name)
    return REGISTRY


def load_kinds(types: list[Any]) -> dict[str, type[Step]]:
    """The registered kinds of these YAML `type`s, importing only their modules (`steps.MODULES`);
    the whole registry when one is not a known type, so that its error can list every valid one."""
    import importlib

    from dataforge.steps import MODULES

    if not types:
        return load_registry()
    kinds: dict[str, type[Step]] = {}
    for name in types:
        if not isinstance(name, str):
            return load_registry()
        if name not in REGISTRY and name in MODULES:
            importlib.import_module(MODULES[name])
        if name not in REGISTRY:
            return load_registry()
        kinds[name] = REGISTRY[name]
    return kinds
