"""Step fingerprints: type, kind version, canonical params, seed, extra inputs, parents' fingerprints."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dataforge.steps.base import PlanContext, Step


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def step_fingerprint(step: Step, ctx: PlanContext, parents: list[str]) -> str:
    payload = {
        "type": step.type,
        "kind_version": step.kind_version,
        "params": step.params(),
        "seed": ctx.seed,
        "extra": step.fingerprint_extra(ctx),
        "inputs": parents,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
