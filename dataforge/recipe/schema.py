"""JSON Schema of recipes, for yaml-language-server and other editors."""

from __future__ import annotations

import json

from dataforge.recipe.model import recipe_model


def schema_json() -> str:
    schema = recipe_model().model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dataforge recipe"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
