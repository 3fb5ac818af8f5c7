"""The `train` extra: checked before any training command does work, so a missing one fails at once."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings

from dataforge.errors import UserError

PACKAGES = ("torch", "transformers", "peft", "gguf")
INSTALL = "pip install torch==2.13.0 && pip install 'dataforge[train]'"


def require() -> None:
    """Raise a `UserError` with the install line when a package of the `train` extra is missing."""
    missing = [m for m in PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"training needs the `train` extra (missing: {', '.join(missing)}); install it with: "
                        f"{INSTALL}")
    # Never reach for the Hugging Face hub: every model is a local directory or the bundled GGUF.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@contextlib.contextmanager
def quiet_peft():
    """Around peft's wrapping and loading calls: peft asks transformers the deprecated
    `is_gradient_checkpointing`, whose FutureWarning is neither ours nor the user's to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield
