"""Base models: the bundled SmolLM2-135M-Instruct GGUF (dequantised into transformers) or a local
Hugging Face directory; the device; and loading a finished run's model for evaluation.

The GGUF is read by transformers' `gguf_file=` loader, which also rebuilds the tokenizer and chat
template from the file, so nothing comes from the hub. Dequantising takes a while, so the result
is saved once as a plain transformers directory under the cache (`$DATAFORGE_CACHE`, default
`~/.cache/dataforge`), keyed by the GGUF's sha256.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataforge.errors import UserError
from dataforge.train import deps
from dataforge.hashing import file_sha256

RUN_FILE = "run.json"  # written into every output_dir: what was trained, on which base model


@dataclass(frozen=True)
class BaseModel:
    """A resolved base model: what the config said, the file or directory, its sha256, its kind."""

    spec: str
    path: Path
    sha256: str
    kind: str  # "gguf" | "hf"


def cache_root() -> Path:
    return Path(os.environ.get("DATAFORGE_CACHE") or Path.home() / ".cache" / "dataforge")


def pick_device(prefer: str | None = None):
    """CUDA when present (or `prefer`), else CPU."""
    import torch

    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=8)
def _hash_file(path: str, size: int, mtime: float) -> str:
    return file_sha256(Path(path))


def resolve_base(spec: str) -> BaseModel:
    """`bundled`, a `.gguf` file or a local HF model directory -> `BaseModel` (UserError if absent)."""
    if spec == "bundled":
        from dataforge.llm.providers.local import bundled_model_path

        path = bundled_model_path()
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise UserError(f"base_model: no such file or directory: {path}")
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"base_model: {path} is a file but not a .gguf; give a GGUF file or a model directory")
        st = path.stat()
        return BaseModel(spec, path, _hash_file(str(path), st.st_size, st.st_mtime), "gguf")
    if not (path / "config.json").is_file():
        raise UserError(f"base_model: {path} has no config.json (not a Hugging Face model directory)")
    return BaseModel(spec, path, file_sha256(path), "hf")


def _dequantised_dir(base: BaseModel) -> Path:
    """A transformers directory with the GGUF's weights dequantised (made once, then reused)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = cache_root() / "gguf" / base.sha256[:32]
    if (out / "config.json").is_file() and (out / ".complete").is_file():
        return out
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tok = AutoTokenizer.from_pretrained(str(base.path.parent), gguf_file=base.path.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(base.path.parent), gguf_file=base.path.name,
                                                      dtype="float32")
        # transformers marks a GGUF-loaded model as quantised and will not save it; its weights are already
        # dequantised, so copy them into a plain model of the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype="float32")
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"GGUF weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        model.tie_weights()
        del loaded
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / ".complete").write_text(json.dumps({"gguf": str(base.path), "sha256": base.sha256}) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def model_dir(base: BaseModel) -> Path:
    """The transformers directory to load `base` from."""
    return _dequantised_dir(base) if base.kind == "gguf" else base.path


def load_tokenizer(base: BaseModel):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir(base)), local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base(base: BaseModel, device=None):
    """(model, tokenizer) for a base model, in float32 on `device` (default: `pick_device()`)."""
    deps.require()
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    directory = model_dir(base)
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32, local_files_only=True)
    model.to(device or pick_device())
    return model, load_tokenizer(base)


def read_run_file(output_dir: str | Path) -> dict[str, Any]:
    """The `run.json` a finished `dataforge train` left in its output directory."""
    p = Path(output_dir) / RUN_FILE
    if not p.is_file():
        raise UserError(f"{output_dir} has no {RUN_FILE}: not the output_dir of a finished `dataforge train` run")
    return json.loads(p.read_text(encoding="utf-8"))


def load_trained(output_dir: str | Path, *, mode: str = "mixed", device=None):
    """(model, tokenizer) of a finished run, in eval mode, for evaluation or generation.

    `sft` / `nce` runs: the base model with the peft adapter (`PeftModel`). `nat` runs: a `NATModel`
    in `mode` (`mixed`: positive LoRA + integration units; `negative`; `base`), switchable later with
    `model.set_mode(...)`.
    """
    info = read_run_file(output_dir)
    base = resolve_base(info["base_model"])
    if base.sha256 != info["base_model_sha256"]:
        raise UserError(f"{output_dir} was trained on base model {info['base_model']} with sha256 "
                        f"{info['base_model_sha256'][:12]}..., which now has {base.sha256[:12]}...")
    model, tok = load_base(base, device)
    if info["method"] == "nat":
        from dataforge.train.nat import NATModel

        nat = NATModel.load(model, Path(output_dir))
        nat.set_mode(mode)
        nat.eval()
        return nat, tok
    from peft import PeftModel

    with deps.quiet_peft():
        peft_model = PeftModel.from_pretrained(model, str(Path(output_dir) / "adapter"))
    peft_model.eval()
    return peft_model, tok
