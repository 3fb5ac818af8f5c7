"""`source.text`: one example per line, split into fields by a regex."""

from __future__ import annotations

import re
from typing import Literal

import polars as pl

from dataforge.fieldtypes import Regex
from dataforge.steps.base import PlanContext, StepError
from dataforge.steps.sources.base import FileSource
from dataforge.steps.sources.checks import check_column_case


class TextSource(FileSource):
    """One example per line, split into fields by a regex, e.g. `^(\\S+)\\s+(.*)$` -> label, text."""

    type: Literal["source.text"]
    pattern: Regex = r"^(\S+)\s+(.*)$"
    """Regex applied to each line; its groups (or named groups) become columns."""
    fields: list[str] | None = ["label", "text"]
    """Names of the regex's groups, in order; ignored when the pattern uses named groups."""
    on_mismatch: Literal["error", "skip"] = "error"
    """What to do with a non-blank line the pattern does not match."""

    def _names(self) -> list[str]:
        rx = re.compile(self.pattern)
        if rx.groupindex:
            return list(rx.groupindex)
        names = self.fields or [f"field_{i}" for i in range(1, rx.groups + 1)]
        if len(names) != rx.groups:
            raise StepError(self.id, "fields", f"pattern has {rx.groups} group(s) but {len(names)} field name(s)")
        return names

    def read(self, ctx: PlanContext) -> pl.DataFrame:
        rx = re.compile(self.pattern)
        names = self._names()
        p = ctx.resolve(self.path)
        mapping = self._mapping()
        check_column_case(self.id, list(mapping) if mapping else names, str(p),
                          "columns" if mapping else "path")
        cols: list[list[str]] = [[] for _ in names]
        # Split on \n / \r\n only: str.splitlines also breaks at U+0085, which Latin-1 files use for '...'.
        for n, line in enumerate(re.split(r"\r?\n|\r", self._text(ctx)), 1):
            if not line.strip():
                continue
            m = rx.match(line)
            if m is None:
                if self.on_mismatch == "skip":
                    continue
                raise StepError(self.id, "pattern", f"{p}:{n}: line does not match the pattern: {line[:80]!r}")
            groups = m.groups() if not rx.groupindex else [m.group(k) for k in names]
            for c, g in zip(cols, groups):
                c.append(g)
        return pl.DataFrame(dict(zip(names, cols)), schema={k: pl.Utf8 for k in names})
