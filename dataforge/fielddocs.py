"""Field descriptions from attribute docstrings, read when something needs them.

Every config field is documented by the string literal after it (the house style). pydantic's
`use_attribute_docstrings` reads those at class creation, parsing each class's source: ~0.3 s for
every step kind, paid by each `build` and `validate` that never shows a description. So the
models leave it off, and what shows descriptions (`dataforge schema`, the recipe reference) calls
`describe` first: it fills `description` on the fields of a model and of every model its fields
hold, by pydantic's rules (an explicit `Field(description=...)` wins; an inherited field takes the
docstring of the class that defines it; a field redefined without one has none), and rebuilds
their schemas so JSON Schema carries them. Two differences, neither met by a schema today: a
class made at run time (`create_model`, no source) takes its bases' docstrings for the fields it
redefines (pydantic gives none; `sampling_model` copied them by hand), and models that never
opted in to docstrings are described too.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import typing
from typing import Any

from pydantic import BaseModel

_borrowed: dict[type, type] = {}
_described: set[type] = set()


def borrow(model: type[BaseModel], source: type[BaseModel]) -> None:
    """`model`'s fields (made from `source`'s, by name) take `source`'s descriptions."""
    _borrowed[model] = source


def describe(*models: type[BaseModel]) -> None:
    """Fill the descriptions of these models' fields, and of the models they hold, from docstrings."""
    order: list[type[BaseModel]] = []
    seen: set[type] = set()
    for m in models:
        _walk(m, seen, order)
    todo = [m for m in order if m not in _described]
    for m in todo:  # held models come before their holders: they are rebuilt first
        _fill(m)
    for m in todo:
        m.model_rebuild(force=True)
        _described.add(m)


def _walk(model: type[BaseModel], seen: set[type], order: list[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    if model in _borrowed:
        _walk(_borrowed[model], seen, order)
    for field in model.__pydantic_fields__.values():
        for held in _models_in(field.annotation):
            _walk(held, seen, order)
    order.append(model)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _fill(model: type[BaseModel]) -> None:
    source = _borrowed.get(model)
    for name, field in model.__pydantic_fields__.items():
        if field.description is not None:
            continue
        if source is not None and name in source.__pydantic_fields__:
            field.description = source.__pydantic_fields__[name].description
        else:
            field.description = _docstring(model, name)


def _docstring(model: type, name: str) -> str | None:
    """The docstring of `name` in the nearest class of `model`'s MRO that defines it. A class made
    at run time (`create_model`: no source) passes the question on to its bases."""
    for cls in model.__mro__:
        if name not in cls.__dict__.get("__annotations__", {}):
            continue
        docs = _class_docs(cls)
        if docs is None:
            continue
        return docs.get(name)
    return None


@functools.cache
def _class_docs(cls: type) -> dict[str, str] | None:
    """Field name -> docstring for the class body of `cls`, or None when its source is not to be had."""
    node = _class_nodes(cls.__module__).get(cls.__qualname__)
    if node is None:
        return None
    docs: dict[str, str] = {}
    for stmt, after in zip(node.body, node.body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


@functools.cache
def _class_nodes(module: str) -> dict[str, ast.ClassDef]:
    """Every class statement of a module's source by qualified name (`f.<locals>.C` inside functions)."""
    mod = sys.modules.get(module)
    try:
        tree = ast.parse(inspect.getsource(mod)) if mod is not None else None
    except (OSError, TypeError):
        tree = None
    found: dict[str, ast.ClassDef] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for stmt in body:
            if isinstance(stmt, ast.ClassDef):
                found.setdefault(prefix + stmt.name, stmt)
                visit(stmt.body, f"{prefix}{stmt.name}.")
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(stmt.body, f"{prefix}{stmt.name}.<locals>.")
            elif isinstance(stmt, (ast.If, ast.Try, ast.With)):
                for part in (getattr(stmt, "body", []), getattr(stmt, "orelse", []), getattr(stmt, "finalbody", [])):
                    visit(part, prefix)

    if tree is not None:
        visit(tree.body, "")
    return found
