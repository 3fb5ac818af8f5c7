"""Real instructions from ../shared/data for the benchmarks (read from there, never copied)."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def alpaca_and_seed_instructions() -> list[str]:
    """The first 2,000 Alpaca instructions, then the 175 Self-Instruct seed instructions."""
    alpaca = json.loads((DATA / "alpaca" / "alpaca_first2000.json").read_text(encoding="utf-8"))
    seeds = [json.loads(line) for line in (DATA / "self_instruct" / "seed_tasks.jsonl").read_text().splitlines()
             if line.strip()]
    return [r["instruction"] for r in alpaca] + [r["instruction"] for r in seeds]
