"""Field descriptions come from attribute docstrings when something asks for them (`describe`),
by the rules pydantic's `use_attribute_docstrings` applies at class creation."""

from __future__ import annotations

import subprocess
import sys

from pydantic import BaseModel, Field, create_model

from dataforge.fielddocs import borrow, describe


class Inner(BaseModel):
    depth: int = 1
    """How deep."""


class Base(BaseModel):
    name: str = "x"
    """The name."""
    size: int = 0
    """The size."""
    label: str = Field(default="", description="said explicitly")
    """Not this one: an explicit description wins."""
    inner: Inner | None = None
    """A nested block."""


class Child(Base):
    size: int = 5  # redefined without a docstring: no description, as pydantic gives it
    extra: list[str] = []
    """Added here."""


def test_descriptions_follow_the_docstring_rules_and_reach_json_schema():
    describe(Child)
    fields = Child.model_fields
    assert fields["name"].description == "The name."  # inherited: the defining class's docstring
    assert fields["size"].description is None
    assert fields["label"].description == "said explicitly"
    assert fields["extra"].description == "Added here."
    assert Inner.model_fields["depth"].description == "How deep."  # a model a field holds
    schema = Child.model_json_schema()
    assert schema["properties"]["name"]["description"] == "The name."
    assert schema["properties"]["extra"]["description"] == "Added here."
    assert schema["$defs"]["Inner"]["properties"]["depth"]["description"] == "How deep."


def test_a_model_made_at_run_time_takes_its_bases_or_its_sources_docstrings():
    derived = create_model("Derived", __base__=Base, size=(int, 9))
    describe(derived)
    assert derived.model_fields["size"].description == "The size."  # no source of its own: the base's
    partial = create_model("Partial", name=(str | None, None), size=(int | None, None))
    borrow(partial, Base)
    describe(partial)
    assert partial.model_fields["name"].description == "The name."
    assert partial.model_json_schema()["properties"]["size"]["description"] == "The size."


def test_loading_the_step_kinds_reads_no_docstrings():
    """A build or validate never shows a description, so it does not pay for reading them (every
    class's source parsed): step models come without, and the schema command adds them."""
    code = ("from dataforge.steps.base import load_registry; r = load_registry(); "
            "print(sum(f.description is not None for c in r.values() for f in c.model_fields.values()))")
    explicit = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    code_described = code.replace("r = load_registry(); ", "r = load_registry(); "
                                  "from dataforge.fielddocs import describe; describe(*r.values()); ")
    described = int(subprocess.run([sys.executable, "-c", code_described], capture_output=True, text=True,
                                   check=True).stdout)
    assert described > 10 * max(explicit, 1)
