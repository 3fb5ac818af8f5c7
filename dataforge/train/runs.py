"""`RunRecord`: how a training, ranking or evaluation run writes its `runs` row through the catalog.

    with RunRecord.start(catalog, kind="train", method="sft", config=cfg_dict, ...) as run:
        run.loss(step=10, loss=2.3, learning_rate=1e-4, tokens=5120)
        run.metrics["eval_loss"] = 1.9
        run.adapter_path = "out/adapter"

Leaving the block closes the run as `done`; an exception closes it as `failed` with the message,
Ctrl-C as `interrupted`; a killed process's run is marked `killed` by the next run. Loss points are
buffered and written in short transactions (every `flush_every` points and at the end), so a
`dataforge sql` in another terminal gets in between.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataforge.catalog.db import is_interrupt
from dataforge.catalog.store import Catalog


@dataclass
class RunRecord:
    """An open `runs` row. `metrics` and `adapter_path` are written when the run closes."""

    catalog: Catalog
    run_id: str
    stage: str = "main"
    """Stage the next loss points belong to (NAT: `negative`, then `positive`)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    adapter_path: str | None = None
    flush_every: int = 20
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _t0: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, catalog: str | Path | Catalog, *, kind: str, method: str | None, config: dict[str, Any],
              config_path: str | None = None, config_sha256: str | None = None, base_model: str | None = None,
              base_model_sha256: str | None = None, data: list[dict[str, Any]] | None = None,
              device: str = "cpu", seed: int | None = None, output_dir: str | None = None,
              repeat_of: str | None = None, started_at: dt.datetime | None = None) -> "RunRecord":
        """Insert a `running` row and return its record (see `Catalog.begin_run` for the fields)."""
        cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
        run_id = cat.begin_run(kind=kind, method=method, config=config, config_path=config_path,
                               config_sha256=config_sha256, base_model=base_model,
                               base_model_sha256=base_model_sha256, data=data or [], device=device, seed=seed,
                               output_dir=output_dir, repeat_of=repeat_of, started_at=started_at)
        return cls(cat, run_id)

    @classmethod
    def resume(cls, catalog: str | Path | Catalog, run_id: str, *, stage: str, step: int,
               later_stages: tuple[str, ...] = ()) -> "RunRecord":
        """Reopen a killed run from a checkpoint taken at `step` of `stage` (later loss points, and those of
        `later_stages`, are dropped)."""
        cat = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
        cat.resume_run(run_id, stage=stage, step=step, later_stages=later_stages)
        return cls(cat, run_id, stage=stage)

    def loss(self, *, step: int, loss: float, split: str = "train", learning_rate: float | None = None,
             tokens: int | None = None) -> None:
        """One point of the loss curve (`split`: `train` or `validation`)."""
        self._pending.append({"stage": self.stage, "split": split, "step": int(step), "loss": float(loss),
                              "learning_rate": learning_rate, "tokens": tokens,
                              "seconds": round(time.monotonic() - self._t0, 3)})
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write buffered loss points now (a checkpoint calls this so the record matches it)."""
        if self._pending:
            self.catalog.log_run_losses(self.run_id, self._pending)
            self._pending = []

    def close(self, status: str = "done", error: str | None = None) -> None:
        self.flush()
        self.catalog.finish_run(self.run_id, status=status, metrics=self.metrics, adapter_path=self.adapter_path,
                                error=error)

    def __enter__(self) -> "RunRecord":
        return self

    def __exit__(self, et, ev, tb) -> None:
        if et is None:
            self.close("done")
        elif is_interrupt(ev):  # Ctrl-C, also when it lands in DuckDB storing loss points
            self.close("interrupted", "interrupted by the user")
        else:
            self.close("failed", f"{et.__name__}: {ev}")
