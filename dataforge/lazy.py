"""Libraries imported on first use, so that a command pays only for what it touches.

polars takes about 0.3 s to import, and a build that stores its sources straight from their files
(or `dataforge validate`, `ls`, `history`) never needs it. Modules on that path write

    if TYPE_CHECKING:
        import polars as pl
    else:
        from dataforge.lazy import polars as pl

and use `pl` as usual: the first attribute looked up imports the library.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for a module until an attribute is looked up, then imports it."""

    def __init__(self, name: str):
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._lazy_name), attr)
        setattr(self, attr, value)  # later look-ups are plain attribute reads
        return value

    def __repr__(self) -> str:
        return f"<lazily imported module {self._lazy_name!r}>"


polars = LazyModule("polars")
