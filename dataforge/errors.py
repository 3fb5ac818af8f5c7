"""Error types. A `UserError` is the user's to fix (exit code 2); anything else is ours (exit 1)."""

from __future__ import annotations


class DataforgeError(Exception):
    """Base class of every error dataforge raises on purpose."""


class UserError(DataforgeError):
    """Bad input: a recipe, a file, a column, a flag. Printed without a traceback, exit code 2."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 col: int | None = None, path: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.path = path
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
                if self.col is not None:
                    where += f":{self.col}"
            where += ": "
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


class RecipeErrors(UserError):
    """Several located problems found while validating one recipe."""

    def __init__(self, errors: list[UserError]):
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))

    def render(self) -> str:  # type: ignore[override]
        return "\n".join(e.render() for e in self.errors)


class CatalogBusy(UserError):
    """The catalog file is locked by another process for longer than we are willing to wait."""


class BudgetExceeded(UserError):
    """A build reached its LLM budget; completed work is kept (printed like a user error, exit code 2)."""
