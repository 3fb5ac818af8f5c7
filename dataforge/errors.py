"""Error types. A `UserError` is the user's to fix (exit code 2); anything else is ours (exit 1)."""

from __future__ import annotations

import errno
import re


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
        # One problem several steps share (the recipe's `llm:` lacks its key) is said once.
        self.errors = list({e.render(): e for e in errors}.values())
        super().__init__("\n".join(e.render() for e in self.errors))

    def render(self) -> str:  # type: ignore[override]
        return "\n".join(e.render() for e in self.errors)


class CatalogBusy(UserError):
    """The catalog file is locked by another process for longer than we are willing to wait."""


class BudgetExceeded(UserError):
    """A build reached its LLM budget; completed work is kept (printed like a user error, exit code 2)."""


# What the machine says when it refuses a write (OS errors, and DuckDB's and polars' texts of them).
_REFUSALS = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
             errno.EFBIG: "File too large", errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied"}
_QUOTED_FILE = re.compile(r'file "([^"]+)"', re.IGNORECASE)


def refusal(e: BaseException) -> tuple[str, str | None] | None:
    """(what the machine said, the file where it is known) when `e` is a write it refused: a full
    disk, a file size limit, a read-only or forbidden folder; None for any other error."""
    text = str(e)
    reason = next((r for r in _REFUSALS.values() if r in text), None)
    if reason is None and isinstance(e, OSError):
        reason = _REFUSALS.get(e.errno)  # type: ignore[arg-type]
    if reason is None:
        return None
    if reason == "File too large":
        reason += ": a file size limit, see `ulimit -f`"
    return reason, getattr(e, "filename", None) or (m[1] if (m := _QUOTED_FILE.search(text)) else None)


def refused_write(e: BaseException) -> UserError | None:
    """`refusal(e)` as a `UserError` naming the file, or None."""
    found = refusal(e)
    if found is None:
        return None
    reason, path = found
    return UserError(f"{path or 'a write was refused'}: {reason}; what was written before is kept: make room "
                     "(or fix the permissions) and run the command again")


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, `timeout`, a cancelled CI job): handled as Ctrl-C, recorded as what it was."""
