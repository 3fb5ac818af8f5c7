"""Output parsers for LLM answers: a regex with named groups, or JSON validated against a small schema.

A parser turns the answer text into extra columns or raises `ParseError`; steps turn that
into a `parse_error` rejection and keep the answer in the call log.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from dataforge.fieldtypes import Regex

# Type names a JSON schema may use -> (python type, polars dtype).
TYPES: dict[str, tuple[Any, pl.DataType]] = {
    "str": (str, pl.Utf8), "int": (int, pl.Int64), "float": (float, pl.Float64), "bool": (bool, pl.Boolean),
    "list[str]": (list[str], pl.List(pl.Utf8)), "list[int]": (list[int], pl.List(pl.Int64)),
    "list[float]": (list[float], pl.List(pl.Float64)),
}


class ParseError(ValueError):
    """The answer does not have the expected shape."""


class RegexParser(BaseModel):
    """Search the answer with a regex; each named group becomes a column (all must match)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["regex"] = "regex"
    pattern: Regex
    """Python regex searched in the answer; named groups `(?P<name>...)` become string columns.
    Without named groups, the first group (or the whole match) replaces the answer column."""
    flags: list[Literal["IGNORECASE", "MULTILINE", "DOTALL"]] = Field(default_factory=list)
    """Regex flags."""

    def compiled(self) -> re.Pattern:
        flags = 0
        for f in self.flags:
            flags |= getattr(re, f)
        return re.compile(self.pattern, flags)

    def columns(self, answer_column: str) -> dict[str, pl.DataType]:
        names = list(self.compiled().groupindex)
        return {n: pl.Utf8 for n in names} if names else {answer_column: pl.Utf8}

    def parse(self, text: str, answer_column: str) -> dict[str, Any]:
        rx = self.compiled()
        m = rx.search(text)
        if m is None:
            raise ParseError(f"no match for regex {self.pattern!r}")
        if rx.groupindex:
            return {n: m.group(n) for n in rx.groupindex}
        return {answer_column: m.group(1) if rx.groups else m.group(0)}


class JsonParser(BaseModel):
    """Read a JSON object from the answer (a ```json fence or the first {...} block) and validate it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["json"] = "json"
    schema_: dict[str, str] = Field(alias="schema")
    """Field name -> type: one of str, int, float, bool, list[str], list[int], list[float]. Each field becomes a
    column; a missing field or a wrong type rejects the row. Suffix a type with `?` to make the field optional."""

    @field_validator("schema_")
    @classmethod
    def _known_types(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("schema needs at least one field")
        for name, t in v.items():
            if t.rstrip("?") not in TYPES:
                raise ValueError(f"field {name!r}: unknown type {t!r}; use one of {', '.join(TYPES)}")
        return v

    def columns(self, answer_column: str) -> dict[str, pl.DataType]:
        return {n: TYPES[t.rstrip("?")][1] for n, t in self.schema_.items()}

    def parse(self, text: str, answer_column: str) -> dict[str, Any]:
        obj = extract_json(text)
        try:
            row = _model(tuple(sorted(self.schema_.items()))).model_validate(obj)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())
            raise ParseError(f"JSON does not match the schema: {problems}") from None
        return row.model_dump()


@functools.lru_cache(maxsize=256)
def _model(schema: tuple[tuple[str, str], ...]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, t in schema:
        py = TYPES[t.rstrip("?")][0]
        fields[name] = (py | None, None) if t.endswith("?") else (py, ...)
    return create_model("Answer", __config__=ConfigDict(extra="ignore", strict=False), **fields)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in an answer: the whole text, a fenced block, or the first balanced {...} / [...]."""
    candidates = [text.strip()] + [m.group(1).strip() for m in _FENCE.finditer(text)]
    for c in candidates:
        try:
            return json.loads(c)
        except json.JSONDecodeError:
            pass
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                return dec.raw_decode(text, i)[0]
            except json.JSONDecodeError:
                continue
    raise ParseError("no JSON value found in the answer")


Parser = RegexParser | JsonParser
