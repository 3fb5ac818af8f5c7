"""`generate.teacher_cot`: sample `k` chain-of-thought rationales per question from a teacher, grade each
against the gold answer, and keep positives and negatives alike (for training on both).

One output row per (question, answered sample): the question's columns, the `rationale`, its extracted
answer, the grade (`correct`, `label`, `grade_reason`, as `transform.grade` gives them) and the question's
counts (`n_positive`, `n_negative`, `all_wrong`). A question whose gold has no final answer is rejected
(`no_gold`) before any call; a sample whose call failed after retries is rejected (`llm_error`).
Prompts: the shipped zero-shot or few-shot CoT templates (`dataforge/prompts/teacher_cot/`), or the
recipe's own `prompt`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import jinja2
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataforge.jinja import compile_template, template_variables
from dataforge.llm.types import CallFailure
from dataforge.steps.base import ID, LLM_ERROR, PARENT, PlanContext, RunContext, StepError, StepResult, rejections_frame
from dataforge.steps.generate.llm_step import LLMStep
from dataforge.textutil.grading import GRADE_COLUMNS, GradeSettings, gold_answer, grade_one

COUNT_COLUMNS = ("n_positive", "n_negative", "all_wrong")
# Names the step provides to its templates (besides the row's columns).
PROVIDED = {"question", "exemplars", "answer_instruction"}
INSTRUCTIONS = {
    "gsm8k": 'End with a last line of the form "#### <answer>", the answer as a number.',
    "boxed": "Put the final answer in \\boxed{}.",
    "answer_is": 'End with "The answer is <answer>."',
    "last_number": "End with the final answer as a number.",
    "regex": "End with the final answer.",
}


class Exemplar(BaseModel):
    """One worked example of a few-shot prompt."""

    model_config = ConfigDict(extra="forbid")

    question: str
    """The problem."""
    rationale: str
    """Its worked solution, without the final-answer line."""
    answer: str
    """The final answer (written after the rationale in the form the extractor reads)."""


def final_line(answer: str, extractor: str) -> str:
    """How an exemplar's final answer is written so that `extractor` finds it."""
    if extractor == "gsm8k":
        return f"#### {answer}"
    if extractor == "boxed":
        return f"The answer is $\\boxed{{{answer}}}$."
    return f"The answer is {answer}."


def shipped_exemplars() -> list[Exemplar]:
    from dataforge.prompts import load

    return [Exemplar(**e) for e in json.loads(load("teacher_cot/exemplars.json"))]


class TeacherCoT(LLMStep, GradeSettings):
    """Sample `k` CoT rationales per question from a teacher; grade each against the gold; keep both kinds."""

    type: Literal["generate.teacher_cot"]
    question_column: str = "question"
    """Column holding the question (the template sees it as `question`)."""
    gold_column: str = "answer"
    """Column holding the gold answer or gold rationale (GSM8K's `answer`)."""
    gold_is_rationale: bool = True
    """True when the gold column holds worked solutions (GSM8K `answer`, MATH `solution`) whose final answer is
    extracted with the same extractor; False when it is the answer itself."""
    k: int = Field(default=8, ge=1, le=1000)
    """Rationales sampled per question (8 in the negative-data distillation paper)."""
    prompt_style: Literal["zero_shot", "few_shot"] = "zero_shot"
    """Shipped template: `zero_shot` (instruction + "Let's think step by step.") or `few_shot` (worked
    `exemplars` first)."""
    prompt: str | None = None
    """Your own Jinja template instead of the shipped one. It sees the row's columns, `question`,
    `answer_instruction` and `exemplars` (each with `question`, `rationale`, `answer`, `final`)."""
    system: str | None = None
    """Optional system message (Jinja template), chat style only."""
    exemplars: list[Exemplar] | None = Field(default=None, min_length=1)
    """Worked examples for `few_shot` (default: four arithmetic problems written for dataforge)."""
    answer_instruction: str | None = None
    """The sentence telling the teacher how to write its final answer. Default: one that fits `extractor`
    (e.g. `#### <answer>` for gsm8k, `\\boxed{}` for boxed)."""
    style: Literal["chat", "completion"] = "chat"
    """`chat` sends the prompt as a user message; `completion` sends it as plain text (base models)."""
    rationale_column: str = "rationale"
    """Column that receives each sampled rationale."""
    answer_column: str = "pred_answer"
    """Column that receives each rationale's extracted final answer."""
    stop: list[str] = Field(default_factory=lambda: ["\nProblem:"])
    """Stop sequences added to `llm.stop`: by default a rationale ends where the teacher starts inventing the
    next problem (small models do), the way few-shot CoT evaluation cuts answers."""

    kind_version: ClassVar[str] = "5"  # 2: answer_is reads "12, since ..." as 12; 3: "x = 5, since ..." as x = 5;
    # 4: "2, as well as -2" stays whole; 5: a title with "Because" is not cut

    @model_validator(mode="after")
    def _consistent(self) -> "TeacherCoT":
        outs = [self.rationale_column, self.answer_column, "sample_index", *GRADE_COLUMNS, *COUNT_COLUMNS]
        for name in (self.rationale_column, self.answer_column):
            if outs.count(name) > 1 or name in (self.question_column, self.gold_column):
                raise ValueError(f"column name {name!r} is used twice; rename rationale_column/answer_column")
        if self.style == "completion" and self.system is not None:
            raise ValueError("style: completion takes no `system` message")
        if self.exemplars is not None and self.prompt_style != "few_shot" and self.prompt is None:
            raise ValueError("`exemplars` are used by prompt_style: few_shot (or your own `prompt`)")
        return self

    # -- declarations ----------------------------------------------------------
    def _templates(self) -> list[tuple[str, str, str]]:
        """(field name, role, source) of each message."""
        from dataforge.prompts import load

        src = self.prompt if self.prompt is not None else load(f"teacher_cot/{self.prompt_style}.jinja")
        out = [("system", "system", self.system)] if self.system else []
        return out + [("prompt", "user", src)]

    def required_columns(self) -> list[str]:
        names = {self.question_column, self.gold_column}
        for field_name, _, src in self._templates():
            try:
                names |= template_variables(src) - PROVIDED
            except jinja2.TemplateSyntaxError as e:
                raise StepError(self.id, field_name, f"template syntax error (line {e.lineno}): {e.message}") from None
        return sorted(names)

    def added_columns(self) -> list[str]:
        return [self.rationale_column, "sample_index", self.answer_column, *GRADE_COLUMNS, *COUNT_COLUMNS]

    def check(self, ctx: PlanContext) -> None:
        self.required_columns()
        super().check(ctx)

    def expected_rows(self, rows_in: int, rejected: int) -> int | None:
        return rows_in * self.k - rejected  # each (question, sample) is a rationale or a rejection

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        # The shipped template and exemplars change the prompts without changing a param.
        prompts = {"templates": [src for *_, src in self._templates()], "context": self._context()}
        return {**super().fingerprint_extra(ctx), **prompts}

    # -- running ---------------------------------------------------------------
    def _context(self) -> dict[str, Any]:
        exemplars = self.exemplars if self.exemplars is not None else shipped_exemplars()
        return {
            "answer_instruction": self.answer_instruction or INSTRUCTIONS[self.extractor],
            "exemplars": [{**e.model_dump(), "final": final_line(e.answer, self.extractor)} for e in exemplars],
        }

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        df = inputs[0]
        cfg = self.effective_llm(ctx)
        settings = self.grading()
        ids = df[ID].to_list() if ID in df.columns else [str(i) for i in range(df.height)]
        golds = [gold_answer(g, settings) for g in df[self.gold_column].to_list()]
        rej: dict[str, list[Any]] = {"row_id": [], "reason": [], "detail": []}
        for i, g in enumerate(golds):
            if g is None:  # one rejection per sample not asked, so every (question, sample) is accounted for
                for k in range(self.k):
                    rej["row_id"].append(ids[i])
                    rej["reason"].append("no_gold")
                    rej["detail"].append(f"sample {k}: not asked; {self.gold_column!r} has no final answer by "
                                         f"extractor {self.extractor!r}")
        asked = [i for i, g in enumerate(golds) if g is not None]

        templates = [(field, role, compile_template(src)) for field, role, src in self._templates()]
        shared = self._context()
        base = self.request_base(cfg, ctx)
        stops = [*(base["stop"] or ()), *(x for x in self.stop if x not in (base["stop"] or ()))]
        base["stop"] = tuple(stops) or None
        requests = []
        rows = df.to_dicts()
        for i in asked:
            values = {**rows[i], **shared, "question": rows[i][self.question_column]}
            try:
                rendered = [(role, t.render(**values)) for _, role, t in templates]
            except jinja2.TemplateError as e:
                raise StepError(self.id, "prompt", f"row {i} (id {ids[i]}): template error: {e}") from None
            for k in range(self.k):
                if self.style == "completion":
                    requests.append(self.request(base, prompt=rendered[-1][1], sample_index=k))
                else:
                    requests.append(self.request(base, messages=rendered, sample_index=k))
        results = self.call(requests, cfg, ctx) if requests else []

        take: list[int] = []
        new: dict[str, list[Any]] = {c: [] for c in [self.rationale_column, "sample_index", self.answer_column,
                                                     *GRADE_COLUMNS, PARENT]}
        counts: dict[int, list[int]] = {i: [0, 0] for i in asked}
        for j, res in enumerate(results):
            i, k = asked[j // self.k], j % self.k
            if isinstance(res, CallFailure):
                rej["row_id"].append(ids[i])
                rej["reason"].append(LLM_ERROR)
                rej["detail"].append(f"sample {k}: {res.error}")
                continue
            text = res.text.strip()
            g = grade_one(text, golds[i], settings)
            counts[i][0 if g.correct else 1] += 1
            take.append(i)
            for c, v in ((self.rationale_column, text), ("sample_index", k), (self.answer_column, g.answer),
                         ("gold_answer", g.gold_answer), ("correct", g.correct), ("label", g.label),
                         ("grade_reason", g.reason), (PARENT, ids[i])):
                new[c].append(v)
        schema = {self.rationale_column: pl.Utf8, "sample_index": pl.Int64, self.answer_column: pl.Utf8,
                  "gold_answer": pl.Utf8, "correct": pl.Boolean, "label": pl.Utf8, "grade_reason": pl.Utf8,
                  PARENT: pl.Utf8}
        out = pl.DataFrame(new, schema=schema).with_columns(
            pl.Series("n_positive", [counts[i][0] for i in take], dtype=pl.Int64),
            pl.Series("n_negative", [counts[i][1] for i in take], dtype=pl.Int64),
            pl.Series("all_wrong", [counts[i][0] == 0 for i in take], dtype=pl.Boolean),
        )
        drop = [c for c in (ID, PARENT, *schema, *COUNT_COLUMNS) if c in df.columns]
        kept = df.drop(drop)
        kept = kept[take] if take else kept.clear()
        out = pl.concat([kept, out], how="horizontal")

        graded = [i for i in asked if sum(counts[i])]
        notes = {"positives": sum(counts[i][0] for i in asked), "negatives": sum(counts[i][1] for i in asked),
                 "all_wrong_questions": sum(1 for i in graded if counts[i][0] == 0)}
        rejections = rejections_frame(rej["row_id"], rej["reason"], detail=rej["detail"]) if rej["row_id"] else None
        return StepResult(df=out, rejections=rejections, notes=notes)
