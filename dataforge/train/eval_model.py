"""Loading a causal LM for evaluation: the bundled SmolLM2 GGUF (dequantised by transformers), a GGUF file
or a local Hugging Face directory, optionally with a peft adapter. Never downloads anything."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dataforge.errors import UserError

TRAIN_INSTALL = "pip install 'dataforge[train]'  (torch==2.13.0 first)"


def require_train_deps(*extra: str) -> None:
    """Fail at once (exit 2) with the install line when the `train` extra is missing."""
    import importlib.util

    missing = [m for m in ("torch", "transformers", *extra) if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"this command needs {', '.join(missing)}: {TRAIN_INSTALL}")


def pick_device(device: str | None = None) -> str:
    """`device` as given, else CUDA when present, else CPU."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(model: str | None = None, adapter: str | None = None, *, device: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer). `model`: None for the bundled SmolLM2-135M-Instruct,
    a `.gguf` file, or a Hugging Face model directory; `adapter`: a peft adapter directory."""
    require_train_deps(*(["peft"] if adapter else []))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if model is None:
        from dataforge.llm.providers.local import bundled_model_path

        path = bundled_model_path()
    else:
        path = Path(model)
        if not path.exists():
            raise UserError(f"--model {model}: no such file or directory")
    kwargs: dict[str, Any] = {"local_files_only": True}
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"--model {path}: expected a model directory or a .gguf file")
        require_train_deps("gguf")
        root, kwargs["gguf_file"] = str(path.parent), path.name
    elif not (path / "config.json").is_file():
        raise UserError(f"--model {path}: not a model directory (no config.json)")
    else:
        root = str(path)
    tok = AutoTokenizer.from_pretrained(root, **kwargs)
    lm = AutoModelForCausalLM.from_pretrained(root, **kwargs)
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise UserError(f"--adapter {adapter}: not a peft adapter directory (no adapter_config.json)")
        lm = PeftModel.from_pretrained(lm, adapter)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return lm.to(pick_device(device)).eval(), tok
