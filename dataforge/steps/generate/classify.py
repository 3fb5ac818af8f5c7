"""`generate.classify`: output-first classification data on its own, balanced over labels.

For every input row (a task instruction) and every one of its labels, the model is shown the
output-first examples of Self-Instruct, the task and "Class label: L", and writes an input of
that class; `per_label` samples per label keep the classes balanced. Labels come from the recipe,
from a column, or (`labels: propose`) from the model itself. Near-duplicate inputs within a label
are dropped with the ROUGE-L pool; every dropped input is a rejection with its text.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field, model_validator

from dataforge.llm.types import CallFailure
from dataforge.steps.base import ID, LLM_ERROR, PARENT, RunContext, StepResult, rejections_frame
from dataforge.steps.generate.llm_step import PromptTemplates, TemplatedLLMStep, sampling_model, stable_id

InputSampling = sampling_model(
    "InputSampling", "Requests that write an input for one label (sampled: `per_label` answers per label differ).",
    temperature=0.7, top_p=1.0, max_tokens=200, presence_penalty=None, frequency_penalty=None,
    stop=["Class label:", "Task:"])
LabelSampling = sampling_model(
    "LabelSampling", "Requests that propose a task's labels (`labels: propose`).",
    temperature=0.0, top_p=1.0, max_tokens=64, presence_penalty=None, frequency_penalty=None, stop=["\n"])


class ClassifyPrompts(PromptTemplates):
    """Jinja templates; null uses the shipped ones."""

    output_first: str | None = None
    """Few-shot output-first prompt ending with the task (variable `instruction`); `Class label: L` and a
    newline are appended per label. Default: `prompts/self_instruct/output_first.jinja`."""
    labels: str | None = None
    """`labels: propose`: prompt asking for the labels (variable `instruction`), answered as a comma-separated
    line. Default: `prompts/classify/labels.jinja`."""

    shipped: ClassVar[dict[str, str]] = {"output_first": "self_instruct/output_first.jinja",
                                         "labels": "classify/labels.jinja"}


class GenerateClassify(TemplatedLLMStep):
    """Generate `per_label` inputs for every label of every classification task (rows carry `label`)."""

    type: Literal["generate.classify"]
    instruction_column: str = "instruction"
    """Column with the task instruction."""
    labels: list[str] | Literal["propose"] | None = None
    """The label set for every row, or `propose` (the model proposes each task's labels first).
    Give this or `labels_column`."""
    labels_column: str | None = None
    """Column with each row's labels (a list of strings, or one comma-separated string)."""
    per_label: int = Field(default=5, ge=1, le=1000)
    """Inputs to generate per label (samples of the same prompt)."""
    max_labels: int = Field(default=10, ge=2)
    """`labels: propose`: keep at most this many proposed labels per task."""
    threshold: float = Field(default=0.7, ge=0, le=1)
    """Drop an input whose best ROUGE-L F against the inputs kept for the same label reaches this (`rouge_l`)."""
    use_stemmer: bool = False
    """ROUGE-L with Porter stemming."""
    sampling: InputSampling = Field(default_factory=InputSampling)  # type: ignore[valid-type]
    """Settings of the input requests."""
    label_sampling: LabelSampling = Field(default_factory=LabelSampling)  # type: ignore[valid-type]
    """Settings of the label-proposal requests."""
    keep_columns: bool = True
    """Copy the input row's columns to each output row."""
    prompts: ClassifyPrompts = Field(default_factory=ClassifyPrompts)
    """Override the shipped prompt templates."""

    kind_version: ClassVar[str] = "2"  # 2: Anthropic's max_tokens stop is truncation

    @model_validator(mode="after")
    def _label_source(self) -> "GenerateClassify":
        if (self.labels is None) == (self.labels_column is None):
            raise ValueError("give exactly one of `labels` (a list, or `propose`) and `labels_column`")
        if isinstance(self.labels, list) and len({x.strip() for x in self.labels if x.strip()}) < 2:
            raise ValueError("labels: give at least two distinct labels")
        return self

    def required_columns(self) -> list[str]:
        return [self.instruction_column] + ([self.labels_column] if self.labels_column else [])

    def added_columns(self) -> list[str]:
        return ["label", "input", "sample_index"]

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        if not self.keep_columns:
            return self.added_columns()
        return super().output_columns(inputs)

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        from dataforge.steps.generate.similarity import InstructionPool

        df = inputs[0]
        cfg = self.effective_llm(ctx)
        ids = df[ID].to_list() if ID in df.columns else [str(i) for i in range(df.height)]
        instructions = df[self.instruction_column].cast(pl.Utf8).fill_null("").to_list()
        rej: dict[str, list[Any]] = {"row_id": [], "reason": [], "score": [], "detail": []}

        def reject(rid: str, reason: str, detail: str, score: float | None = None) -> None:
            for k, v in (("row_id", rid), ("reason", reason), ("score", score), ("detail", detail)):
                rej[k].append(v)

        with self.session(cfg, ctx) as s:
            labels = self._labels(df, instructions, ids, cfg, ctx, s, reject)
            base = self.request_base(cfg, ctx, self.sampling)
            jobs: list[tuple[int, str, int]] = []
            reqs = []
            for i, (inst, labs) in enumerate(zip(instructions, labels)):
                head = self.render("output_first", instruction=inst.strip()).rstrip("\n")
                for lab in labs:
                    for k in range(self.per_label):
                        jobs.append((i, lab, k))
                        reqs.append(self.prompt_request(base, f"{head}\n{'Class label:'} {lab}\n", k))
            results = s.run(reqs)
        from dataforge.llm.engine import raise_if_stopped

        raise_if_stopped(results)
        pools: dict[tuple[int, str], InstructionPool] = {}
        take: list[int] = []
        out: dict[str, list[Any]] = {"label": [], "input": [], "sample_index": [], PARENT: []}
        for (i, lab, k), res in zip(jobs, results):
            rid = stable_id(ids[i], lab, str(k))
            if isinstance(res, CallFailure):
                reject(rid, LLM_ERROR, f"{lab}: {res.error}")
                continue
            text = res.text.strip()
            if res.truncated:
                reject(rid, "truncated", f"[{lab}] {text}")
                continue
            if not text or text.lower() == lab.lower() or text.endswith(":"):
                reject(rid, "empty_input" if not text else "invalid_input", f"[{lab}] {text}")
                continue
            pool = pools.setdefault((i, lab), InstructionPool([], threshold=self.threshold, top_k=0,
                                                              use_stemmer=self.use_stemmer))
            v = pool.offer([text])[0]
            if not v.keep:
                reject(rid, "rouge_l", f"[{lab}] {text}\n-- nearest: {v.nearest}", v.score)
                continue
            take.append(i)
            out["label"].append(lab)
            out["input"].append(text)
            out["sample_index"].append(k)
            out[PARENT].append(ids[i])
        schema = {"label": pl.Utf8, "input": pl.Utf8, "sample_index": pl.Int64, PARENT: pl.Utf8}
        new = pl.DataFrame(out, schema=schema)
        if self.keep_columns:
            rest = df.drop([c for c in (ID, PARENT, *schema) if c in df.columns])
            new = pl.concat([rest[take] if take else rest.clear(), new], how="horizontal")
        counts = new.group_by("label").len().sort("label")
        notes = {"label_counts": dict(zip(counts["label"].to_list(), counts["len"].to_list()))}
        rejections = rejections_frame(rej["row_id"], rej["reason"], rej["score"], rej["detail"]) \
            if rej["row_id"] else None
        return StepResult(df=new, rejections=rejections, notes=notes)

    def _labels(self, df: pl.DataFrame, instructions: list[str], ids: list[str], cfg: Any, ctx: RunContext,
                s: Any, reject: Any) -> list[list[str]]:
        """Each row's labels: the recipe's, the column's, or the model's proposal."""
        if isinstance(self.labels, list):
            return [_clean(self.labels)] * df.height
        if self.labels_column is not None:
            out = []
            for i, v in enumerate(df[self.labels_column].to_list()):
                labs = _clean(v.split(",") if isinstance(v, str) else list(v or []))
                if len(labs) < 2:
                    reject(ids[i], "no_labels", f"{instructions[i]}\n-- labels: {v!r}")
                    labs = []
                out.append(labs)
            return out
        from dataforge.llm.engine import raise_if_stopped

        base = self.request_base(cfg, ctx, self.label_sampling)
        results = s.run([self.prompt_request(base, self.render("labels", instruction=t.strip()))
                         for t in instructions])
        raise_if_stopped(results)
        out = []
        for i, res in enumerate(results):
            if isinstance(res, CallFailure):
                reject(ids[i], LLM_ERROR, f"{instructions[i]}\n-- label proposal failed: {res.error}")
                out.append([])
                continue
            labs = _clean(re.split(r"[,;]", res.text.strip().splitlines()[0] if res.text.strip() else ""))
            labs = labs[: self.max_labels]
            if len(labs) < 2:
                reject(ids[i], "no_labels", f"{instructions[i]}\n-- proposed: {res.text.strip()[:300]}")
                labs = []
            out.append(labs)
        return out


def _clean(labels: list[Any]) -> list[str]:
    """Labels stripped of spaces and trailing dots, empty ones dropped, repeats (ignoring case) dropped."""
    seen: set[str] = set()
    out = []
    for x in labels:
        lab = str(x).strip().rstrip(".").strip()
        if lab and lab.lower() not in seen:
            seen.add(lab.lower())
            out.append(lab)
    return out
