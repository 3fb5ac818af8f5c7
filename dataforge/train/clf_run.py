"""`dataforge eval-classification`: label log-likelihood accuracy of a model on classification prompts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from dataforge.catalog.store import utc_now
from dataforge.train.options import Device


class ClfEvalConfig(BaseModel):
    """Options of `dataforge eval-classification` (the CLI flags map to these fields)."""

    model_config = ConfigDict(extra="forbid")

    data: str
    """Prompts: a catalog dataset (`name` or `name@version`, e.g. `transform.symbols` output) or an export."""
    split: str | None = None
    """Split of an export (default: validation when it has one, else train)."""
    prompt_column: str = "prompt"
    """Column with the prompt."""
    target_column: str | None = None
    """Column with the expected label (default: `target`, else `completion`)."""
    labels_column: str | None = None
    """Column with each row's label set: a JSON object (its values, as `symbol_map`), a JSON list or a list.
    Default: `symbol_map` when present."""
    labels: list[str] | None = None
    """One label set for every row (instead of a column). Without both: the distinct targets."""
    limit: int | None = Field(default=None, ge=1)
    """Evaluate the first N rows only."""
    model: str | None = None
    """A Hugging Face model directory or a `.gguf` file; default: the bundled SmolLM2-135M-Instruct."""
    adapter: str | None = None
    """A peft adapter directory applied to the model."""
    separator: str | None = None
    """Text between prompt and label; default: a space unless the prompt ends in whitespace (none in chat mode)."""
    chat: bool = False
    """Wrap the prompt in the tokenizer's chat template (as a user message); the label is the reply."""
    system_prompt: str | None = None
    """System message in chat mode."""
    score: Literal["sum", "mean"] = "sum"
    """Log-likelihood of a label: `sum` over its tokens, or `mean` (length-normalised)."""
    batch_size: int = Field(default=8, ge=1, le=1024)
    """Prompts per forward pass."""
    device: Device = None
    """torch device (default: CUDA when present, else CPU)."""


def run_classification_eval(cfg: ClfEvalConfig, *, catalog: Path, out: Path | None = None,
                            log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Evaluate, write `out` (JSON with per-row predictions) and a `runs` row; return the result."""
    from dataforge.train.clf_eval import ScoringOptions, check_rows, evaluate_classification
    from dataforge.train.eval_data import read_rows
    from dataforge.train.eval_model import load_causal_lm, require_train_deps
    from dataforge.train.runs import RunRecord

    require_train_deps()
    t0 = time.perf_counter()
    started = utc_now()  # the run's record counts from here: reading data and loading models are part of it
    df, origin = read_rows(cfg.data, catalog=catalog, split=cfg.split)
    if cfg.limit:
        df = df.head(cfg.limit)
    check_rows(df, source=cfg.data, prompt_column=cfg.prompt_column, target_column=cfg.target_column,
               labels_column=cfg.labels_column, labels=cfg.labels)  # bad input fails before the model loads
    lm, tok = load_causal_lm(cfg.model, cfg.adapter, device=cfg.device)
    device = str(next(lm.parameters()).device)
    base = cfg.model
    if base is None:
        from dataforge.llm.providers.local import bundled_model_path

        base = str(bundled_model_path())
    opts = ScoringOptions(separator=cfg.separator, chat=cfg.chat, system_prompt=cfg.system_prompt, score=cfg.score,
                          batch_size=cfg.batch_size)
    with RunRecord.start(catalog, kind="eval", method="classification", config=cfg.model_dump(mode="json"),
                         base_model=base, base_model_sha256=None, data=[origin], device=device, seed=None,
                         output_dir=str(out) if out else None, started_at=started) as run:
        log(f"eval {run.run_id}: {df.height} prompts from {cfg.data} on {Path(base).name}"
            f"{' + ' + cfg.adapter if cfg.adapter else ''} ({device})")
        res = evaluate_classification(df, lm, tok, source=cfg.data, prompt_column=cfg.prompt_column,
                                      target_column=cfg.target_column, labels_column=cfg.labels_column,
                                      labels=cfg.labels, opts=opts)
        metrics = {**res.metrics(), "predicted": res.predicted, "device": device}
        result = {"run_id": run.run_id, "method": "classification", "data": origin,
                  "config": cfg.model_dump(mode="json"), "model": {"model": base, "adapter": cfg.adapter},
                  "metrics": metrics, "seconds": round(time.perf_counter() - t0, 2)}
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({**result, "predictions": res.predictions}, indent=1, ensure_ascii=False)
                           + "\n", encoding="utf-8")
        run.metrics.update(metrics)
    return result
