"""The mixture file: which catalog datasets to export, with weights, caps, templates, split and dedup.

Loaded with the recipe loader, so every problem points at `mixture.yaml:LINE:COL: key.path`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dataforge.errors import UserError
from dataforge.recipe.loader import KeyPath, Positions, format_path, load_yaml
from dataforge.recipe.located import validate_located
from dataforge.textutil.templating import FlanTemplate, TemplateSettings, check_templates


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportTemplate(TemplateSettings):
    """Export-time templating, done by the same code as `transform.template` (`apply_templates`).

    Per row one of `templates` is drawn (seeded by the mixture seed and the row id); its prompt
    becomes `prompt` and its target `completion`. The other fields (options blocks, few-shot
    exemplars, CoT triggers, inversion) work as in `transform.template`.
    """

    templates: list[FlanTemplate] = Field(min_length=1)
    """Prompt/target templates (`{id, prompt, target}`); templates see the row's columns, `answer` and `options`."""

    @field_validator("templates")
    @classmethod
    def _compile(cls, v: list[FlanTemplate]) -> list[FlanTemplate]:
        return check_templates(v)


class MixtureSource(_Model):
    """One catalog dataset in the mixture."""

    dataset: str = Field(min_length=1)
    """Catalog dataset name (what a recipe's `outputs` named)."""
    version: int | None = Field(default=None, ge=1)
    """Dataset version to read; default: the latest."""
    weight: float = Field(default=1.0, gt=0)
    """Multiplies the source's capped size in its rate: r_i is proportional to weight * min(rows, cap)."""
    cap: int | None = Field(default=None, ge=1)
    """Most rows this source contributes (and counts with in the rate); overrides the mixture's `cap`."""
    template: ExportTemplate | None = None
    """Templates for this source's rows; overrides the mixture's `template`."""


class SplitConfig(_Model):
    """Train/validation split by group: every row of a group lands on the same side."""

    validation_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Share of rows to put in validation (whole groups are moved, so the result is close, not exact). 0: no validation split."""
    group_column: str | None = None
    """Column naming a row's group, e.g. `task` (a source without it is one group); `source` groups by dataset. Default: each row is its own group."""


class DedupConfig(_Model):
    """Cross-dataset deduplication, applied before caps and rates."""

    column: str = "prompt"
    """Column compared between rows (after templating), e.g. `prompt`."""
    normalize: bool = True
    """Compare lower-cased text with whitespace runs collapsed and ends trimmed."""


class Mixture(_Model):
    """A mixture: catalog datasets mixed examples-proportionally with caps, then exported."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", max_length=128)
    """Mixture name, recorded in the manifest."""
    description: str | None = None
    """What the mixture is for, for people."""
    seed: int = 0
    """Seed of every random choice (which rows are sampled, which groups go to validation)."""
    sources: list[MixtureSource] = Field(min_length=1)
    """The datasets to mix, in priority order (dedup keeps the row of the earlier source)."""
    cap: int | None = Field(default=None, ge=1)
    """Default per-source cap (Flan uses a few thousand to 30,000); null: no cap."""
    total: int | None = Field(default=None, ge=1)
    """Rows to export in all; null: every row after caps. Must not exceed the capped rows available."""
    template: ExportTemplate | None = None
    """Templating at export time for sources without their own; without any, a source needs `prompt` and `completion` (or `target`) columns."""
    style: Literal["text", "chat"] = "text"
    """`text`: prompt/completion fields; `chat`: also a `messages` list (system?, user, assistant)."""
    system_prompt: str | None = None
    """System message put first in `messages` (`style: chat` only)."""
    keep_columns: list[str] = Field(default_factory=list)
    """Extra source columns copied into the export, e.g. `task` (null for a source that lacks one)."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    """Train/validation split."""
    dedup: DedupConfig | None = None
    """Cross-dataset dedup; null: keep duplicates."""

    @model_validator(mode="after")
    def _distinct_sources(self) -> "Mixture":
        seen: set[tuple[str, int | None]] = set()
        for s in self.sources:
            key = (s.dataset, s.version)
            if key in seen:
                raise ValueError(f"dataset {s.dataset!r} is listed twice")
            seen.add(key)
        if self.system_prompt is not None and self.style != "chat":
            raise ValueError("system_prompt needs style: chat")
        return self


@dataclass
class MixtureFile:
    """A validated mixture and where its keys are in the file (to locate later errors)."""

    mixture: Mixture
    path: Path
    sha256: str
    positions: Positions

    def error(self, message: str, key: KeyPath = ()) -> UserError:
        """A `UserError` pointing at `key` (or its nearest ancestor) in the mixture file."""
        line, col = self.positions.find(key) or (None, None)
        return UserError(message, file=str(self.path), line=line, col=col, path=format_path(key) or None)


def load_mixture(path: str | Path) -> MixtureFile:
    """Parse and validate a mixture file; every problem is reported as `file:line:col: key: message`."""
    path = Path(path)
    data, pos = load_yaml(path, kind="mixture")
    if not isinstance(data, dict):
        raise UserError("a mixture must be a mapping with name and sources", file=str(path), line=1, col=1)
    mixture = validate_located(Mixture, data, pos)
    return MixtureFile(mixture, path, hashlib.sha256(path.read_bytes()).hexdigest(), pos)
