"""`dataforge eval`: sample k rationales per question, extract their answers, and score the votes.

Samples come through the LLM engine, so every answer lands in `llm_calls` and a rerun pays nothing:
the bundled GGUF (or another one) runs in llama.cpp; a Hugging Face model directory, or any model
with a peft adapter, runs in transformers (`hf_generate`). Answers are extracted with the
generators' extractor and grouped by equivalence; `voting` computes self-consistency, adaptive
self-consistency (with a ranker), greedy and ranker accuracy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dataforge.catalog.store import utc_now
from dataforge.errors import UserError
from dataforge.train import answers
from dataforge.train.options import Device
from dataforge.train.voting import Question, evaluate_votes

DEFAULT_PROMPT = ("Solve this math problem step by step. Finish with a line '#### <answer>' that gives the "
                  "final answer as a number.\n\nProblem: {{ question }}")
"""Default zero-shot chain-of-thought prompt (a Jinja template over the row's columns)."""


class EvalConfig(BaseModel):
    """Options of `dataforge eval` (the CLI flags map to these fields)."""

    model_config = ConfigDict(extra="forbid")

    data: str
    """Questions with gold answers: a catalog dataset (`name` or `name@version`) or an export directory."""
    split: str | None = None
    """Split of an export (default: validation when it has one, else train)."""
    question_column: str = "question"
    """Column with the question (the prompt template may read any column)."""
    gold_column: str = "answer"
    """Column with the gold answer (or a gold rationale: see `gold_is_rationale`)."""
    gold_is_rationale: bool = False
    """The gold column holds worked solutions (GSM8K's `answer`): their answer is extracted like the samples'."""
    limit: int | None = Field(default=None, ge=1)
    """Evaluate the first N questions only."""
    k: int = Field(default=16, ge=1, le=256)
    """Sampled rationales per question."""
    temperature: float = Field(default=0.7, gt=0, le=2)
    """Sampling temperature of the k samples."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling mass."""
    max_tokens: int = Field(default=256, ge=1, le=8192)
    """Most tokens per rationale."""
    greedy: bool = True
    """Also draw one greedy (temperature 0) rationale per question for greedy accuracy."""
    prompt: str = DEFAULT_PROMPT
    """Jinja template of the prompt over the row's columns."""
    style: Literal["chat", "completion"] = "chat"
    """`chat`: the prompt is a user message (chat template); `completion`: sent as plain text."""
    system_prompt: str | None = None
    """System message in chat style."""
    extractor: str = "gsm8k"
    """Answer extractor (as in `transform.grade`): gsm8k, boxed, answer_is, last_number."""
    model: str | None = None
    """A `.gguf` file (llama.cpp) or a Hugging Face model directory (transformers). Default: the bundled
    SmolLM2-135M-Instruct."""
    adapter: str | None = None
    """A peft adapter directory (the model then runs in transformers)."""
    backend: Literal["auto", "llama.cpp", "transformers"] = "auto"
    """`auto`: transformers for a model directory or an adapter, else llama.cpp."""
    ranker: str | None = None
    """A ranker directory (`dataforge rank train`): enables adaptive self-consistency and ranker accuracy."""
    seed: int = 0
    """Sampling seed (sample i of a prompt uses seed + i where the backend takes one)."""
    batch_size: int = Field(default=16, ge=1, le=1024)
    """transformers: requests generated together."""
    device: Device = None
    """transformers: torch device (default: CUDA when present, else CPU)."""

    @field_validator("prompt")
    @classmethod
    def _template(cls, v: str) -> str:
        import jinja2

        from dataforge.jinja import compile_template

        try:
            compile_template(v)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"template syntax error at line {e.lineno}: {e.message}") from None
        return v

    @field_validator("extractor")
    @classmethod
    def _extractor(cls, v: str) -> str:
        answers.check_extractor(v)
        return v

    def uses_transformers(self) -> bool:
        if self.backend != "auto":
            return self.backend == "transformers"
        return self.adapter is not None or (self.model is not None and Path(self.model).is_dir())


def _provider_and_label(cfg: EvalConfig) -> tuple[Any, str, str, dict]:
    """(provider or None for the engine's own, request provider name, model label, model info)."""
    if not cfg.uses_transformers():
        from dataforge.llm.providers.local import model_file
        from dataforge.llm.config import LLMConfig

        if cfg.model is not None and not Path(cfg.model).exists():
            raise UserError(f"--model {cfg.model}: no such file or directory")
        if cfg.model is not None and not Path(cfg.model).is_file():
            raise UserError(f"--model {cfg.model}: llama.cpp needs a .gguf file (a model directory runs with "
                            "--backend transformers)")
        path = model_file(LLMConfig(model_path=cfg.model))
        return None, "local", "smollm2-135m-instruct" if cfg.model is None else path.stem, {"model_file": str(path)}
    from dataforge.llm.config import LLMConfig
    from dataforge.train.eval_model import load_causal_lm
    from dataforge.train.hf_generate import TransformersProvider, weights_digest

    lm, tok = load_causal_lm(cfg.model, cfg.adapter, device=cfg.device)
    if cfg.model is None:
        from dataforge.llm.providers.local import bundled_model_path

        base = bundled_model_path()
    else:
        base = Path(cfg.model)
    digest = weights_digest([base, *([Path(cfg.adapter)] if cfg.adapter else [])])
    label = base.stem if base.is_file() else base.name
    if cfg.adapter:
        label += f"+{Path(cfg.adapter).name}"
    prov = TransformersProvider(LLMConfig(), lm, tok, digest=digest, batch_size=cfg.batch_size)
    return prov, "transformers", label, {"model": str(base), "adapter": cfg.adapter, "weights": digest,
                                         "device": str(next(lm.parameters()).device)}


def run_eval(cfg: EvalConfig, *, catalog: Path, out: Path | None = None,
             log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Sample, extract, vote; write `out` (JSON) and a `runs` record; return the result."""
    from dataforge.train.eval_data import read_rows, require_columns

    t0 = time.perf_counter()
    started = utc_now()  # the run's record counts from here: reading data and loading models are part of it
    df, origin = read_rows(cfg.data, catalog=catalog, split=cfg.split)
    require_columns(df, {"--question-column": cfg.question_column, "--gold-column": cfg.gold_column}, cfg.data)
    if cfg.limit:
        df = df.head(cfg.limit)
    if df.height == 0:
        raise UserError(f"{cfg.data}: no questions to evaluate")
    rows = df.to_dicts()
    golds = [answers.gold_answer(r[cfg.gold_column], cfg.extractor, cfg.gold_is_rationale) for r in rows]
    if all(g is None for g in golds):
        raise UserError(f"{cfg.data}: no gold answer could be read from column {cfg.gold_column!r}")
    ranker = None
    if cfg.ranker:
        from dataforge.train.ranker import Ranker

        ranker = Ranker.load(cfg.ranker, device=cfg.device)

    provider, provider_name, label, model_info = _provider_and_label(cfg)
    from dataforge.train.runs import RunRecord

    with RunRecord.start(catalog, kind="eval", method="vote", config=cfg.model_dump(mode="json"),
                         base_model=model_info.get("model") or model_info.get("model_file"),
                         base_model_sha256=model_info.get("weights"), data=[origin],
                         device=model_info.get("device", "cpu"), seed=cfg.seed,
                         output_dir=str(out) if out else None, started_at=started) as run:
        result = _sample_and_vote(cfg, rows, golds, ranker, provider, provider_name, label, catalog, run.run_id, log)
        result.update({"run_id": run.run_id, "data": origin, "model": model_info,
                       "seconds": round(time.perf_counter() - t0, 2)})
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        run.metrics.update({**result["metrics"], "calls": result["calls"],
                            "skipped_questions": result["skipped_questions"]})
    return result


def _sample_and_vote(cfg: EvalConfig, rows: list[dict], golds: list[str | None], ranker: Any, provider: Any,
                     provider_name: str, label: str, catalog: Path, run_id: str,
                     log: Callable[[str], None]) -> dict[str, Any]:
    from dataforge.catalog.store import Catalog
    from dataforge.jinja import compile_template
    from dataforge.llm.config import LLMConfig
    from dataforge.llm.context import LLMContext
    from dataforge.llm.engine import raise_if_stopped, run_requests_with_stats
    from dataforge.llm.types import Message, Request

    template = compile_template(cfg.prompt)
    llm_cfg = LLMConfig(model_path=cfg.model if provider is None else None, temperature=cfg.temperature,
                        top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed,
                        max_concurrency=cfg.batch_size if provider is not None else 1)
    extra = provider.request_extra() if provider is not None else _local_extra(llm_cfg)
    base = dict(provider=provider_name, model=label, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed,
                extra=extra)
    requests: list[Request] = []
    for i, row in enumerate(rows):
        try:
            text = template.render(**row)
        except Exception as e:  # jinja2 errors (an undefined column) and the like
            raise UserError(f"--prompt: row {i}: template error: {e}") from None
        kw: dict[str, Any] = ({"prompt": text} if cfg.style == "completion" else {"messages": tuple(
            ([Message(role="system", content=cfg.system_prompt)] if cfg.system_prompt else [])
            + [Message(role="user", content=text)])})
        requests += [Request(**kw, **base, temperature=cfg.temperature, sample_index=s) for s in range(cfg.k)]
        if cfg.greedy:
            requests.append(Request(**kw, **base, temperature=0.0, sample_index=0))
    per_q = cfg.k + int(cfg.greedy)
    log(f"eval {run_id}: {len(rows)} questions x {cfg.k} samples{' + greedy' if cfg.greedy else ''} "
        f"from {provider_name}:{label}")
    try:
        ctx = LLMContext(build_id=run_id, step_id="eval", store=Catalog(catalog), log=log)
        results, stats = run_requests_with_stats(requests, llm_cfg, ctx, desc="eval", provider=provider)
    finally:
        if provider is not None:
            import asyncio

            asyncio.run(provider.aclose())
    raise_if_stopped(results)

    texts = [getattr(r, "text", None) for r in results]
    scores_flat = None
    if ranker is not None:
        qs = [str(rows[j // per_q][cfg.question_column]) for j in range(len(texts))]
        scores_flat = ranker.score(qs, [t or "" for t in texts]).tolist()
    questions: list[Question] = []
    details: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        chunk = texts[i * per_q:(i + 1) * per_q]
        ans = [answers.extract(t, cfg.extractor) for t in chunk[:cfg.k]]
        sc = scores_flat[i * per_q:i * per_q + cfg.k] if scores_flat is not None else None
        greedy = (answers.extract(chunk[cfg.k], cfg.extractor) or "") if cfg.greedy else None
        if golds[i] is None:
            continue
        questions.append(Question(gold=golds[i], answers=ans, scores=sc, greedy=greedy))
        details.append({"question": row[cfg.question_column], "gold": golds[i], "answers": ans,
                        "scores": [round(x, 4) for x in sc] if sc is not None else None, "greedy": greedy})
    metrics = evaluate_votes(questions, answers.equivalent)
    for d, q in zip(details, questions):
        d["groups"] = q.groups
    return {
        "method": "eval", "config": cfg.model_dump(mode="json"), "metrics": metrics,
        "skipped_questions": len(rows) - len(questions),
        "calls": {"requests": stats.requests, "cached": stats.cached, "called": stats.called, "failed": stats.failed,
                  "input_tokens": stats.input_tokens, "output_tokens": stats.output_tokens},
        "questions": details,
    }


def _local_extra(cfg: Any) -> dict:
    from dataforge.llm.providers import make_provider

    return make_provider(cfg).request_extra()
