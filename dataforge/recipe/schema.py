"""JSON Schemas of the files curators write (recipes, mixtures, train configs), for
yaml-language-server and other editors. `dataforge schema` writes them to `schemas/`."""

from __future__ import annotations

import json

from pydantic import BaseModel

from dataforge.fielddocs import describe

#: kind -> (file name in `schemas/`, schema title)
SCHEMAS = {
    "recipe": ("recipe.schema.json", "dataforge recipe"),
    "mixture": ("mixture.schema.json", "dataforge mixture"),
    "train": ("train.schema.json", "dataforge train config"),
}


def _model(kind: str) -> type[BaseModel]:
    if kind == "recipe":
        from dataforge.recipe.model import recipe_model
        return recipe_model()
    if kind == "mixture":
        from dataforge.export.mixture import Mixture
        return Mixture
    if kind == "train":
        from dataforge.train.config import TrainConfig
        return TrainConfig
    raise ValueError(f"no schema for {kind!r}; known: {', '.join(SCHEMAS)}")


def schema_json(kind: str = "recipe") -> str:
    """The JSON Schema (draft 2020-12) of one kind of file, as the text `schemas/` holds."""
    model = _model(kind)
    describe(model)
    schema = model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = SCHEMAS[kind][1]
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
