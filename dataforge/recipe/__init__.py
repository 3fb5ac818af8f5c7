"""Recipes: YAML loading with positions, pydantic models, validation, JSON Schema."""
