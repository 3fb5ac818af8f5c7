"""The DuckDB catalog. `store.Catalog` is the only code that writes it; `query` only reads."""

from dataforge.catalog.db import default_catalog_path

__all__ = ["default_catalog_path"]
