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


def load_causal_lm(model: str | None = None, adapter: str | None = None, *,
                   device: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer). `model`: None for the bundled SmolLM2-135M-Instruct,
    a `.gguf` file, or a Hugging Face model directory (`dataforge.train.model`: a GGUF is dequantised
    once and cached). `adapter`: a peft adapter directory, or the output directory of a `dataforge
    train` run (its own base model; a NAT run in mixed mode)."""
    require_train_deps(*(["peft"] if adapter else []))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from dataforge.train.model import load_base, load_trained, read_run_file, resolve_base

    if adapter and (Path(adapter) / "run.json").is_file():
        if model is not None:
            info = read_run_file(adapter)
            if resolve_base(model).sha256 != info.get("base_model_sha256"):
                raise UserError(f"--adapter {adapter} was trained on {info.get('base_model')}, not on --model {model}")
        lm, tok = load_trained(adapter, device=pick_device(device))
        return lm.eval(), tok
    if model is not None and not Path(model).exists():
        raise UserError(f"--model {model}: no such file or directory")
    try:
        base = resolve_base(model or "bundled")
    except UserError as e:
        raise UserError(f"--model {model}: {e.message.removeprefix('base_model: ')}") from None
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise UserError(f"--adapter {adapter}: not a peft adapter directory (no adapter_config.json) nor the "
                        "output directory of a `dataforge train` run (no run.json)")
    lm, tok = load_base(base, pick_device(device))
    if adapter:
        from peft import PeftModel

        from dataforge.train.deps import quiet_peft

        with quiet_peft():
            lm = PeftModel.from_pretrained(lm, adapter)
    return lm.eval(), tok
