"""YAML loading that remembers where every key and value came from.

`load_yaml` returns the plain Python tree plus a `Positions` map from key paths
(tuples of str keys and int indexes) to 1-based (line, column), so validation
errors can point at `recipe.yaml:LINE:COL`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dataforge.errors import UserError

KeyPath = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each node of a loaded YAML document starts (1-based line and column)."""

    file: str
    spots: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def find(self, path: KeyPath) -> tuple[int, int] | None:
        """Position of `path`, or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            if p in self.spots:
                return self.spots[p]
            if not p:
                return None
            p = p[:-1]


def format_path(path: KeyPath) -> str:
    """`("steps", 2, "threshold")` -> `steps[2].threshold`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _read_text(path: Path, kind: str = "recipe") -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{kind} file not found", file=str(path)) from None
    except IsADirectoryError:
        raise UserError(f"expected a {kind} file, got a directory", file=str(path)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise UserError(f"file is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})",
                        file=str(path), line=line, col=col) from None


MAX_ALIAS_EXPANSION = 100_000
"""Values a document may gain by expanding YAML aliases (`*name`): a "billion laughs" recipe stops here."""


class _Budget:
    """Counts values built from nodes already built once (alias expansions); holds the document's scalar
    constructor."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.expanded = 0
        self.scalars = yaml.constructor.SafeConstructor()


def _construct(node: yaml.Node, path: KeyPath, pos: Positions, file: str, budget: _Budget) -> Any:
    pos.spots.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if id(node) in budget.seen:
        budget.expanded += 1
        if budget.expanded > MAX_ALIAS_EXPANSION:
            raise UserError(f"YAML aliases expand to more than {MAX_ALIAS_EXPANSION:,} values; "
                            "a recipe this size is a mistake (or an alias bomb)", file=file,
                            line=node.start_mark.line + 1, col=node.start_mark.column + 1)
    else:
        budget.seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise UserError("mapping keys must be plain strings", file=file,
                                line=key_node.start_mark.line + 1, col=key_node.start_mark.column + 1,
                                path=format_path(path) or None)
            key = key_node.value
            if key in out:
                raise UserError(f"duplicate key {key!r}", file=file, line=key_node.start_mark.line + 1,
                                col=key_node.start_mark.column + 1, path=format_path(path + (key,)))
            pos.spots[path + (key,)] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
            out[key] = _construct(value_node, path + (key,), pos, file, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), pos, file, budget) for i, item in enumerate(node.value)]
    # Scalars: let PyYAML's safe constructor resolve ints, floats, bools, nulls.
    value = budget.scalars.construct_object(node, deep=True)
    if isinstance(value, str) and _SURROGATE.search(value):
        value = _join_surrogates(value, node, file)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _join_surrogates(text: str, node: yaml.Node, file: str) -> str:
    """YAML's `\\uXXXX` escapes do not pair UTF-16 surrogates (JSON writers escape emoji that way): pair
    them; a lone one is no character at all."""
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise UserError("string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is no character",
                        file=file, line=node.start_mark.line + 1, col=node.start_mark.column + 1) from None


def _compose(text: str) -> yaml.Node | None:
    """The document's node tree: libyaml's parser where PyYAML has it (several times faster on large
    recipes), PyYAML's own for a document libyaml refuses, so errors read the same everywhere and
    escaped surrogate pairs (which only PyYAML's parser takes) still load."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def load_yaml(path: str | Path, kind: str = "recipe") -> tuple[Any, Positions]:
    """Parse one YAML document; raise `UserError` with file:line:col on any syntax problem.

    `kind` names the file in the errors about the file itself (`train config file not found`)."""
    path = Path(path)
    text = _read_text(path, kind)
    pos = Positions(file=str(path))
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = f"YAML syntax error: {e.problem or e.context}"
        if e.problem and e.context and e.context_mark is not None and e.context_mark is not mark:
            # e.g. an unclosed quote: say where the construct began, not only where the file ended.
            msg += f" ({e.context} at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
        raise UserError(msg, file=str(path), line=mark.line + 1 if mark else None,
                        col=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise UserError(f"YAML error: {e}", file=str(path)) from None
    if node is None:
        raise UserError("recipe is empty" if kind == "recipe" else f"{kind} file is empty", file=str(path),
                        line=1, col=1)
    try:
        data = _construct(node, (), pos, str(path), _Budget())
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        raise UserError(f"YAML error: {e.problem}", file=str(path),
                        line=mark.line + 1 if mark else None, col=mark.column + 1 if mark else None) from None
    return data, pos


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_vars(data: Any, variables: dict[str, Any], pos: Positions, path: KeyPath = ()) -> Any:
    """Replace `${name}` in every string below `data` with `variables[name]`.

    A string that is exactly one `${name}` takes the variable's value with its type.
    """
    if isinstance(data, dict):
        return {k: substitute_vars(v, variables, pos, path + (k,)) for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_vars(v, variables, pos, path + (i,)) for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def lookup(name: str) -> Any:
        if name not in variables:
            line, col = pos.find(path) or (None, None)
            known = ", ".join(sorted(variables)) or "none defined"
            raise UserError(f"unknown variable ${{{name}}} (variables: {known})", file=pos.file,
                            line=line, col=col, path=format_path(path))
        return variables[name]

    whole = _VAR.fullmatch(data)
    if whole:
        return lookup(whole.group(1))
    return _VAR.sub(lambda m: str(lookup(m.group(1))), data)
