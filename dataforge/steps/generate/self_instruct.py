"""`generate.self_instruct`: bootstrap new instructions from seed tasks, as the Self-Instruct pipeline does.

Rounds of `prompts_per_round` prompts (8 instructions each, at most 2 from the machine pool) are
sent concurrently; each answer is split into candidate instructions, which pass the heuristic
rules of `filter.heuristics` and the ROUGE-L pool (`similarity.InstructionPool`) before they are
kept. Then every kept instruction is labelled classification or not (few-shot yes/no) and gets
instances (input-first, or output-first for classification), which pass the instance filters.
One output row per (task, instance). Every dropped candidate, task or instance is a rejection
whose `detail` holds its text. All defaults are the reference pipeline's values.
"""

from __future__ import annotations

import json
import random
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import BaseModel, Field, model_validator

from dataforge.llm.config import LLMConfig
from dataforge.llm.types import CallFailure, Completion, Request
from dataforge.steps.base import ID, LLM_ERROR, PARENT, RunContext, StepError, StepResult, rejections_frame
from dataforge.steps.filter.heuristics import SELF_INSTRUCT_BLACKLIST, HeuristicsFilter
from dataforge.steps.generate import self_instruct_parse as sip
from dataforge.steps.generate.llm_step import PromptTemplates, TemplatedLLMStep, sampling_model, stable_id

BootstrapSampling = sampling_model(
    "BootstrapSampling", "Requests that ask for new instructions (Self-Instruct's values).",
    temperature=0.7, top_p=0.5, max_tokens=1024, presence_penalty=2.0, frequency_penalty=0.0,
    stop=["\n\n", "\n16", "16.", "16 ."])
IdentifySampling = sampling_model(
    "IdentifySampling", "Requests that ask whether a task is classification (Self-Instruct's values).",
    temperature=0.0, top_p=0.0, max_tokens=3, presence_penalty=0.0, frequency_penalty=0.0, stop=["\n", "Task"])
InstanceSampling = sampling_model(
    "InstanceSampling", "Requests that ask for a task's instances (Self-Instruct's values; `max_tokens` is for "
                        "ordinary tasks, `max_tokens_classification` of the step for classification tasks).",
    temperature=0.0, top_p=0.0, max_tokens=350, presence_penalty=1.5, frequency_penalty=0.0,
    stop=["Example 6", "Task:"])


class SelfInstructPrompts(PromptTemplates):
    """Jinja templates of the step's prompts; null uses the template shipped in `dataforge/prompts/self_instruct/`."""

    bootstrap: str | None = None
    """Completion-style list prompt. Variables: `instructions` (list), `classification` (bool)."""
    bootstrap_chat: str | None = None
    """Chat-style user message asking to continue the list. Variables: as `bootstrap`."""
    identify: str | None = None
    """Few-shot "is it classification?" prompt. Variable: `instruction`."""
    input_first: str | None = None
    """Instance prompt for ordinary tasks. Variable: `instruction`."""
    output_first: str | None = None
    """Instance prompt for classification tasks. Variable: `instruction`."""

    shipped: ClassVar[dict[str, str]] = {name: f"self_instruct/{name}.jinja" for name in
                                         ("bootstrap", "bootstrap_chat", "identify", "input_first", "output_first")}


class SelfInstruct(TemplatedLLMStep):
    """Bootstrap instructions from seed tasks (Self-Instruct), then label and instantiate them."""

    type: Literal["generate.self_instruct"]
    instruction_column: str = "instruction"
    """Seed column with the task instruction."""
    instances_column: str = "instances"
    """Seed column with the task's instances, a list of `{input, output}` (read with `include_seeds`)."""
    is_classification_column: str = "is_classification"
    """Seed column telling classification tasks (read with `classification_only` or `include_seeds`)."""
    target: int = Field(default=100, ge=1)
    """Machine instructions to keep (the reference's `num_instructions_to_generate`)."""
    max_rounds: int = Field(default=1000, ge=1)
    """Stop after this many rounds even if fewer than `target` were kept (not a failure; the step says so)."""
    prompts_per_round: int = Field(default=5, ge=1)
    """Prompts per round, sent concurrently (the reference's `request_batch_size`)."""
    prompt_instructions: int = Field(default=8, ge=1)
    """Instructions listed in each prompt."""
    machine_per_prompt: int = Field(default=2, ge=0)
    """At most this many of them from the machine-generated pool (the rest are seeds), when it has any."""
    classification_only: bool = False
    """Prompt with classification seeds only and the classification header (the reference's
    `use_clf_seed_tasks_only`)."""
    sampling: BootstrapSampling = Field(default_factory=BootstrapSampling)  # type: ignore[valid-type]
    """Settings of the instruction requests."""
    min_words: int = Field(default=4, ge=0)
    """Drop candidates with fewer words (the reference drops 3 words or fewer)."""
    max_words: int = Field(default=150, ge=1)
    """Drop candidates with more words."""
    blacklist: list[str] = Field(default_factory=lambda: list(SELF_INSTRUCT_BLACKLIST))
    """Drop candidates containing one of these whole words/phrases, ignoring case (`blacklist:WORD`)."""
    forbidden_prefixes: list[str] = Field(default_factory=lambda: ["Write a program"])
    """Drop candidates starting with one of these (`forbidden_prefix`)."""
    drop_leading_punctuation: bool = True
    """Drop candidates starting with punctuation or a symbol (`leading_punctuation`)."""
    drop_non_ascii_start: bool = True
    """Drop candidates starting with a non-ASCII character (`non_ascii_start`)."""
    threshold: float = Field(default=0.7, ge=0, le=1)
    """Drop a candidate whose best ROUGE-L F against the seeds and every kept instruction (earlier ones of
    the same round included) is at least this (`rouge_l`), as `filter.rouge_l` compares."""
    use_stemmer: bool = False
    """ROUGE-L with Porter stemming (the reference scores without)."""
    most_similar: int = Field(default=10, ge=0)
    """Nearest pool instructions recorded per kept row in `most_similar`."""
    identify: bool = True
    """Ask the model whether each kept instruction is a classification task (column `is_classification`).
    Off: every machine task gets `classification_only`."""
    identify_sampling: IdentifySampling = Field(default_factory=IdentifySampling)  # type: ignore[valid-type]
    """Settings of the yes/no requests."""
    instances: bool = True
    """Generate instances for every kept instruction (one output row per instance). Off: one row per task."""
    instance_sampling: InstanceSampling = Field(default_factory=InstanceSampling)  # type: ignore[valid-type]
    """Settings of the instance requests."""
    max_tokens_classification: int = Field(default=300, ge=1)
    """`max_tokens` of instance requests for classification tasks (their prompt is longer)."""
    max_instances: int = Field(default=5, ge=1)
    """Keep at most this many instances per task (a seeded sample)."""
    include_seeds: bool = False
    """Also output the seed tasks' own instances (the reference's `include_seed_tasks`)."""
    prompts: SelfInstructPrompts = Field(default_factory=SelfInstructPrompts)
    """Override the shipped prompt templates (`style: chat` sends `bootstrap_chat` instead of `bootstrap`)."""

    kind_version: ClassVar[str] = "3"  # 2: chat preambles, over_target neighbours, max_tokens; 3: chat
    # answers with no numbered line (`unnumbered`) or numbered from 1 again (`renumbered`) are no tasks

    @model_validator(mode="after")
    def _sizes(self) -> "SelfInstruct":
        if self.machine_per_prompt > self.prompt_instructions:
            raise ValueError("machine_per_prompt must not exceed prompt_instructions")
        if self.min_words > self.max_words:
            raise ValueError("min_words must not exceed max_words")
        return self

    # -- declarations ----------------------------------------------------------
    def required_columns(self) -> list[str]:
        cols = [self.instruction_column]
        if self.classification_only or self.include_seeds:
            cols.append(self.is_classification_column)
        if self.include_seeds:
            cols.append(self.instances_column)
        return cols

    def added_columns(self) -> list[str]:
        cols = ["instruction", "is_classification", "task_id", "source", "round", "most_similar",
                "avg_similarity_score"]
        return cols + (["input", "output"] if self.instances else [])

    def output_columns(self, inputs: list[list[str] | None]) -> list[str] | None:
        return self.added_columns()

    def _rules(self) -> HeuristicsFilter:
        return HeuristicsFilter(id=f"{self.id}-rules", type="filter.heuristics", column="instruction",
                                min_words=self.min_words, max_words=self.max_words, blacklist=self.blacklist,
                                forbidden_prefixes=self.forbidden_prefixes,
                                drop_leading_punctuation=self.drop_leading_punctuation,
                                drop_non_ascii_start=self.drop_non_ascii_start, dedup="none")

    # -- running ---------------------------------------------------------------
    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        seeds = inputs[0]
        cfg = self.effective_llm(ctx)
        run = _Run(self, seeds, cfg, ctx)
        with self.session(cfg, ctx) as s:
            tasks = run.bootstrap(s)
            run.identify(s, tasks)
            rows = run.instantiate(s, tasks) if self.instances else run.task_rows(tasks)
        if self.include_seeds and self.instances:
            rows = run.seed_rows() + rows
        return run.result(rows)


class _Task(BaseModel):
    instruction: str
    task_id: str
    round: int
    seed_parents: list[str]
    most_similar: dict[str, float]
    avg_similarity: float
    is_classification: bool | None = None


class _Run:
    """One execution of the step: the RNG, the pool, the rejections gathered so far."""

    def __init__(self, step: SelfInstruct, seeds: pl.DataFrame, cfg: LLMConfig, ctx: RunContext):
        from dataforge.steps.generate.similarity import InstructionPool

        self.step = step
        self.cfg = cfg
        self.ctx = ctx
        self.rng = random.Random(f"{ctx.seed}:{step.id}")
        if step.classification_only:
            seeds = seeds.filter(pl.col(step.is_classification_column).cast(pl.Boolean).fill_null(False))
        self.seeds = seeds
        texts = seeds[step.instruction_column].cast(pl.Utf8).fill_null("").to_list()
        self.seed_texts = [sip.prompt_item(t) for t in texts]
        self.seed_ids = seeds[ID].to_list() if ID in seeds.columns else [stable_id("seed", t) for t in texts]
        if not self.seed_texts:
            raise StepError(step.id, "from", "the seed dataset has no rows" +
                            (" marked classification" if step.classification_only else ""))
        self.pool = InstructionPool(self.seed_texts, threshold=step.threshold, top_k=step.most_similar,
                                    use_stemmer=step.use_stemmer)
        self.rej: dict[str, list[Any]] = {"row_id": [], "reason": [], "score": [], "detail": []}
        self.lineage: list[tuple[str, str]] = []
        self.notes: dict[str, Any] = {}

    def reject(self, row_id: str, reason: str, detail: str, score: float | None = None) -> None:
        self.rej["row_id"].append(row_id)
        self.rej["reason"].append(reason)
        self.rej["score"].append(score)
        self.rej["detail"].append(detail)

    def render(self, name: str, **values: Any) -> str:
        return self.step.render(name, **values)

    def request(self, text: str, sampling: Any, index: int, *, chat_text: str | None = None) -> Request:
        return self.step.prompt_request(self.step.request_base(self.cfg, self.ctx, sampling), text, index,
                                        chat_text=chat_text)

    # -- 1. instructions -------------------------------------------------------
    def _prompt(self, machine: list[_Task]) -> tuple[list[str], list[str]]:
        """(the prompt's instructions, lineage ids): machine ones first drawn, then seeds, shuffled."""
        st = self.step
        picked = self.rng.sample(machine, min(st.machine_per_prompt, len(machine)))
        n_seed = min(st.prompt_instructions - len(picked), len(self.seed_texts))
        seed_idx = self.rng.sample(range(len(self.seed_texts)), n_seed)
        items = [(t.instruction, t.task_id) for t in picked] + [(self.seed_texts[i], self.seed_ids[i]) for i in seed_idx]
        self.rng.shuffle(items)
        return [sip.prompt_item(t) for t, _ in items], [pid for _, pid in items]

    def bootstrap(self, s: Any) -> list[_Task]:
        st = self.step
        kept: list[_Task] = []
        request_idx = 0
        rounds = 0
        rules = st._rules()
        while len(kept) < st.target and rounds < st.max_rounds:
            prompts = [self._prompt(kept) for _ in range(st.prompts_per_round)]
            reqs = []
            for k, (items, _) in enumerate(prompts):
                values = dict(instructions=items, classification=st.classification_only)
                reqs.append(self.request(self.render("bootstrap", **values), st.sampling, request_idx + k,
                                         chat_text=self.render("bootstrap_chat", **values)
                                         if st.style == "chat" else None))
            results = s.run(reqs)
            _raise_if_stopped(results)
            cands: list[tuple[str, list[str], int]] = []  # text, lineage parents, round
            for (items, parents), res, r in zip(prompts, results, reqs):
                if isinstance(res, CallFailure):
                    self.reject(stable_id("call", r.hash()), LLM_ERROR, res.error)
                    continue
                if res.truncated:
                    self.reject(stable_id("response", res.text), "truncated", res.text)
                    continue
                if st.style == "chat":
                    pieces, dropped = sip.split_chat_list(res.text, len(items) + 1)
                    for reason, text in dropped:
                        self.reject(stable_id("cand", text), reason, text)
                else:
                    pieces = sip.split_list(res.text)
                cands += [(p, parents, rounds) for p in pieces]
            request_idx += len(reqs)
            rounds += 1
            kept += self._filter(cands, rules, st.target - len(kept))
        self.notes["rounds"] = rounds
        self.notes["kept_instructions"] = len(kept)
        if len(kept) < st.target:
            msg = (f"stopped at max_rounds={st.max_rounds} with {len(kept)} of target={st.target} instructions "
                   "kept (not a failure; raise max_rounds to go on)")
            self.notes["stopped"] = msg
            self.ctx.log(f"  {st.id}: {msg}")
        return kept

    def _filter(self, cands: list[tuple[str, list[str], int]], rules: HeuristicsFilter, room: int) -> list[_Task]:
        if not cands:
            return []
        df = pl.DataFrame({ID: [stable_id("cand", t) for t, _, _ in cands], "instruction": [t for t, _, _ in cands]})
        marked = rules.reasons(df)
        reasons = marked["_reason"].to_list()
        scores = marked["_score"].to_list()
        passing = []
        for (text, parents, rnd), reason, score, cid in zip(cands, reasons, scores, df[ID].to_list()):
            if reason is None:
                passing.append((text, parents, rnd, cid))
            else:
                self.reject(cid, reason, text, score)
        verdicts = self.pool.offer([t for t, _, _, _ in passing]) if passing else []
        out: list[_Task] = []
        over: set[str] = set()  # texts the pool took in beyond `room`: never kept, so never anyone's "nearest"
        for (text, parents, rnd, cid), v in zip(passing, verdicts):
            if not v.keep and v.nearest not in over:
                self.reject(cid, "rouge_l", f"{text}\n-- nearest: {v.nearest}", v.score)
            elif len(out) >= room:
                over.add(text)
                self.reject(cid, "over_target", text)
            else:
                out.append(_Task(instruction=text, task_id=stable_id("task", text), round=rnd, seed_parents=parents,
                                 most_similar=v.most_similar or {}, avg_similarity=v.avg_similarity or 0.0))
        return out

    # -- 2. classification or not ------------------------------------------------
    def identify(self, s: Any, tasks: list[_Task]) -> None:
        st = self.step
        if not st.identify:
            for t in tasks:
                t.is_classification = st.classification_only
            return
        reqs = [self.request(self.render("identify", instruction=t.instruction.strip()), st.identify_sampling, 0)
                for t in tasks]
        results = s.run(reqs)
        _raise_if_stopped(results)
        for t, res in zip(tasks, results):
            if isinstance(res, CallFailure):
                self.reject(t.task_id, LLM_ERROR, f"{t.instruction}\n-- identification failed: {res.error}")
                continue
            t.is_classification = sip.parse_yes_no(res.text) is True

    # -- 3. instances ------------------------------------------------------------------
    def instantiate(self, s: Any, tasks: list[_Task]) -> list[dict[str, Any]]:
        st = self.step
        todo = [t for t in tasks if t.is_classification is not None]
        reqs = []
        for t in todo:
            name = "output_first" if t.is_classification else "input_first"
            sampling = st.instance_sampling
            if t.is_classification:
                sampling = sampling.model_copy(update={"max_tokens": st.max_tokens_classification})
            text = self.render(name, instruction=t.instruction.strip()).rstrip("\n") + "\n"
            reqs.append(self.request(text, sampling, 0))
        results = s.run(reqs)
        _raise_if_stopped(results)
        rows: list[dict[str, Any]] = []
        for t, res in zip(todo, results):
            if isinstance(res, CallFailure):
                self.reject(t.task_id, LLM_ERROR, f"{t.instruction}\n-- instances failed: {res.error}")
                continue
            parsed = (sip.parse_output_first if t.is_classification else sip.parse_input_first)(res.text)
            rng = random.Random(f"{self.ctx.seed}:{st.id}:{t.task_id}")
            kept, dropped = sip.filter_instances(parsed, truncated=res.truncated,
                                                 max_instances=st.max_instances, rng=rng)
            for d in dropped:
                self.reject(stable_id("instance", t.task_id, d.instance.input, d.instance.output), d.reason,
                            _instance_text(t.instruction, d.instance))
            if not kept:
                if not dropped:
                    self.reject(t.task_id, "no_instances", f"{t.instruction}\n-- answer: {res.text[:500]}")
                continue
            self._task_lineage(t)
            rows += [self._row(t, inst.input, inst.output) for inst in kept]
        return rows

    def task_rows(self, tasks: list[_Task]) -> list[dict[str, Any]]:
        for t in tasks:
            self._task_lineage(t)
        return [self._row(t) for t in tasks if t.is_classification is not None]

    def _task_lineage(self, t: _Task) -> None:
        self.lineage += [(t.task_id, p) for p in t.seed_parents]

    def _row(self, t: _Task, inp: str | None = None, out: str | None = None) -> dict[str, Any]:
        row = {"instruction": t.instruction, "is_classification": t.is_classification, "task_id": t.task_id,
               "source": "machine", "round": t.round,
               "most_similar": json.dumps(t.most_similar, ensure_ascii=False),
               "avg_similarity_score": t.avg_similarity, PARENT: [t.task_id]}
        if self.step.instances:
            row |= {"input": inp, "output": out}
        return row

    def seed_rows(self) -> list[dict[str, Any]]:
        st = self.step
        rows = []
        for sid, rec in zip(self.seed_ids, self.seeds.iter_rows(named=True)):
            for inst in rec.get(st.instances_column) or []:
                rows.append({"instruction": rec[st.instruction_column].strip(),
                             "is_classification": bool(rec.get(st.is_classification_column)),
                             "task_id": sid, "source": "seed", "round": None, "most_similar": None,
                             "avg_similarity_score": None, "input": (inst.get("input") or "").strip(),
                             "output": (inst.get("output") or "").strip(), PARENT: [sid]})
        return rows

    def result(self, rows: list[dict[str, Any]]) -> StepResult:
        schema: dict[str, Any] = {"instruction": pl.Utf8, "is_classification": pl.Boolean, "task_id": pl.Utf8,
                                  "source": pl.Utf8, "round": pl.Int64, "most_similar": pl.Utf8,
                                  "avg_similarity_score": pl.Float64}
        if self.step.instances:
            schema |= {"input": pl.Utf8, "output": pl.Utf8}
        schema[PARENT] = pl.List(pl.Utf8)
        df = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
        rej = rejections_frame(self.rej["row_id"], self.rej["reason"], self.rej["score"], self.rej["detail"]) \
            if self.rej["row_id"] else None
        lineage = pl.DataFrame({"row_id": [a for a, _ in self.lineage], "parent_id": [b for _, b in self.lineage]},
                               schema={"row_id": pl.Utf8, "parent_id": pl.Utf8}).unique(maintain_order=True) \
            if self.lineage else None
        return StepResult(df=df, rejections=rej, lineage=lineage, notes=self.notes)


def _instance_text(instruction: str, inst: sip.Instance) -> str:
    return f"{instruction}\nInput: {inst.input}\nOutput: {inst.output}"


def _raise_if_stopped(results: list[Completion | CallFailure]) -> None:
    from dataforge.llm.engine import raise_if_stopped

    raise_if_stopped(results)
