"""Flan-style templating: several templates per task, one picked per row by seed.

`apply_templates` is the one implementation used by `transform.template` and by export-time
templating. It supports zero-shot and few-shot prompts (exemplars from the same task, a
separator drawn per row, pruned to a length budget in words or tokenizer tokens), an answer
options block (`OPTIONS:\\n- a\\n- b`, optionally lettered with the target rewritten to the
letter), chain-of-thought templates (rationale in the target, "... Therefore, the answer is X.")
with zero-shot CoT triggers, and input inversion (templates that ask for the input given the
answer, picked with a given probability).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataforge.jinja import render_column, template_variables
from dataforge.textutil.fewshot import DEFAULT_SEPARATORS, sample_distinct, slice_joined
from dataforge.textutil.randomness import integers, row_keys, uniform


ANSWER = "answer"
OPTIONS = "options"
COT_PHRASE = "Therefore, the answer is"


class FlanTemplate(BaseModel):
    """One prompt/target template pair for a task."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    """Name recorded in the output's `template_id`."""
    prompt: str
    """Jinja template of the prompt; sees the row's columns, `answer` and `options` (the options block)."""
    target: str | None = None
    """Jinja template of the target. Default `{{ answer }}`; for CoT templates
    `{{ <rationale_column> }} Therefore, the answer is {{ answer }}.`"""
    cot: bool = False
    """A chain-of-thought template: the target carries the rationale; zero-shot prompts get a CoT trigger."""
    inverted: bool = False
    """An input-inversion template (asks for the input given the answer); picked with probability `inversion`."""


def check_templates(templates: list[FlanTemplate], where: str = "") -> list[FlanTemplate]:
    """Raise `ValueError` naming the template and line when ids repeat or a template does not compile."""
    import jinja2

    from dataforge.jinja import compile_template

    ids = [t.id for t in templates]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}template ids must be unique")
    for t in templates:
        for src in (t.prompt, t.target or ""):
            try:
                compile_template(src)
            except jinja2.TemplateSyntaxError as e:
                raise ValueError(f"template {t.id!r}: line {e.lineno}: {e.message}") from None
    return templates


class TemplateSettings(BaseModel):
    """How templates are applied (fields shared by `transform.template` and export-time templating)."""

    model_config = ConfigDict(extra="forbid")

    answer_column: str = "label"
    """Column with each row's answer (class label or output text); templates see it as `answer`."""
    rationale_column: str | None = None
    """Column with the rationale used by CoT templates' default target."""
    options: bool = False
    """Give templates an options block (`options`) listing the task's distinct answers (or `options_column`)."""
    options_column: str | None = None
    """List column with each row's own options (instead of the task's distinct answers)."""
    lettered_options: bool = False
    """Letter the options (`(A) neg`) and rewrite `answer` to the letter (`(A)`)."""
    options_header: str = "OPTIONS:"
    """First line of the options block."""
    shots: int = Field(default=0, ge=0, le=64)
    """Exemplars per prompt from the same task (0: zero-shot), rendered with the row's template."""
    few_shot_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """With `shots`, the share of rows made few-shot (drawn per row); the rest stay zero-shot, as Flan mixes both."""
    separators: list[str] = Field(default_factory=lambda: list(DEFAULT_SEPARATORS), min_length=1)
    """Separators between exemplars and before the query; one is drawn per row."""
    answer_delimiter: str = "\n"
    """Between an exemplar's prompt and its target."""
    max_length: int | None = Field(default=None, ge=1)
    """Prune exemplars (last first) until the prompt fits this many words/tokens; the query always stays."""
    length_unit: Literal["words", "tokens"] = "words"
    """Unit of `max_length`: whitespace-separated words, or tokens of `tokenizer`."""
    tokenizer: str | None = None
    """A local `tokenizer.json` (or a directory holding one) for `length_unit: tokens`."""
    cot_triggers: list[str] = Field(default_factory=lambda: ["Let's think step by step."])
    """Zero-shot CoT triggers; one is appended (drawn per row) to zero-shot prompts of CoT templates."""
    inversion: float = Field(default=0.0, ge=0.0, le=1.0)
    """Probability that a row uses one of its task's inverted templates (when it has any)."""

    @model_validator(mode="after")
    def _tokens_need_tokenizer(self) -> "TemplateSettings":
        if self.length_unit == "tokens" and self.tokenizer is None:
            raise ValueError("length_unit: tokens needs `tokenizer` (a local tokenizer.json)")
        return self


def target_source(t: FlanTemplate, settings: TemplateSettings) -> str:
    """The target template of `t`, with the defaults for plain and CoT templates."""
    if t.target is not None:
        return t.target
    if t.cot and settings.rationale_column:
        return "{{ " + settings.rationale_column + " }} " + COT_PHRASE + " {{ " + ANSWER + " }}."
    return "{{ " + ANSWER + " }}"


def required_variables(templates: list[FlanTemplate], settings: TemplateSettings) -> set[str]:
    """Columns the templates read (besides `answer` and `options`) - to check before running."""
    names: set[str] = {settings.answer_column}
    for t in templates:
        names |= template_variables(t.prompt) | template_variables(target_source(t, settings))
    return names - {ANSWER, OPTIONS}


def letter(i: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (option letters)."""
    from dataforge.textutil.symbols import letter_string

    return letter_string(i)


def options_block(options: list[str], lettered: bool = False, header: str = "OPTIONS:") -> str:
    """`OPTIONS:\\n- a\\n- b`, or lettered `OPTIONS:\\n(A) a\\n(B) b`."""
    lines = [f"({letter(i)}) {o}" if lettered else f"- {o}" for i, o in enumerate(options)]
    return "\n".join([header, *lines])


def cot_target(rationale: str, answer: str) -> str:
    """`"<rationale> Therefore, the answer is <answer>."` (the default CoT target)."""
    return f"{rationale} {COT_PHRASE} {answer}."


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str):
    from tokenizers import Tokenizer

    p = Path(path)
    return Tokenizer.from_file(str(p / "tokenizer.json" if p.is_dir() else p))


def lengths(texts: pl.Series, settings: TemplateSettings) -> np.ndarray:
    """Length of each text in the unit of `settings.max_length`."""
    if settings.length_unit == "words":
        return texts.str.count_matches(r"\S+").fill_null(0).to_numpy().astype(np.int64)
    enc = _tokenizer(settings.tokenizer).encode_batch(texts.to_list(), add_special_tokens=False)
    return np.array([len(e.ids) for e in enc], dtype=np.int64)


def _answers(df: pl.DataFrame, settings: TemplateSettings) -> pl.DataFrame:
    """Add `answer` and `options` columns (options empty when off)."""
    ans = pl.col(settings.answer_column).cast(pl.Utf8)
    if settings.options_column:
        opts = df[settings.options_column].cast(pl.List(pl.Utf8)).to_list()
        answers = df[settings.answer_column].cast(pl.Utf8).to_list()
        blocks = [options_block(o or [], settings.lettered_options, settings.options_header) for o in opts]
        if settings.lettered_options:
            answers = [f"({letter(o.index(a))})" if o and a in o else a for o, a in zip(opts, answers)]
        return df.with_columns(pl.Series(ANSWER, answers, dtype=pl.Utf8), pl.Series(OPTIONS, blocks, dtype=pl.Utf8))
    if not settings.options:
        return df.with_columns(ans.alias(ANSWER), pl.lit("", dtype=pl.Utf8).alias(OPTIONS))
    labels = sorted(df[settings.answer_column].cast(pl.Utf8).drop_nulls().unique().to_list())
    block = options_block(labels, settings.lettered_options, settings.options_header)
    answer = ans.replace_strict({lab: f"({letter(i)})" for i, lab in enumerate(labels)}, default=ans) \
        if settings.lettered_options else ans
    return df.with_columns(answer.alias(ANSWER), pl.lit(block, dtype=pl.Utf8).alias(OPTIONS))


def apply_templates(df: pl.DataFrame, templates: list[FlanTemplate], settings: TemplateSettings, seed: int,
                    task: str = "") -> pl.DataFrame:
    """Template every row of one task; returns `df` plus `prompt, target, template_id, exemplar_ids`.

    `df` needs an `id` column (row key for the seeded choices) and the columns the templates read.
    Per row, keyed by (seed, task, id): inverted vs. plain templates (probability `inversion`), the
    template, the separator, the exemplars (`shots` other rows of the task, rendered with the
    same template) and the CoT trigger. Exemplars beyond `max_length` are pruned, last first.
    """
    if not templates:
        raise ValueError(f"task {task!r} has no templates")
    n = df.height
    work = _answers(df, settings)
    keys = row_keys(df["id"])
    plain = [i for i, t in enumerate(templates) if not t.inverted]
    inverted = [i for i, t in enumerate(templates) if t.inverted]
    pools = [plain or inverted, inverted or plain]
    use_inv = (uniform(keys, seed, f"{task}:inversion") < settings.inversion) if inverted and plain \
        else np.full(n, not plain)
    pick = np.empty(n, dtype=np.int64)
    for flag, pool in ((False, pools[0]), (True, pools[1])):
        m = use_inv == flag
        if m.any():
            pick[m] = np.asarray(pool)[integers(keys[m], seed, f"{task}:template", len(pool))]

    shots = min(settings.shots, max(n - 1, 0))
    few = uniform(keys, seed, f"{task}:few-shot") < settings.few_shot_rate if shots else np.zeros(n, dtype=bool)
    ex = np.zeros((n, 0), dtype=np.int64)
    if shots:
        ex = sample_distinct(keys, np.full(n, n - 1), np.full(n, shots), shots, seed, f"{task}:shots",
                             skip=np.arange(n))

    # One template and no few-shot rows (e.g. export-time templating): render the rows in order.
    single = n > 0 and not few.any() and bool((pick == pick[0]).all())
    if single:
        t0 = templates[int(pick[0])]
        q_prompt, q_target = render_column(work, t0.prompt), render_column(work, target_source(t0, settings))
    # Render each (row, template) pair that is needed once.
    pairs = np.unique(np.concatenate([
        np.stack([np.arange(n), pick], 1),
        np.stack([ex[few].ravel(), np.repeat(pick[few], ex.shape[1])], 1),
    ]), axis=0) if n and not single else np.zeros((0, 2), dtype=np.int64)
    rendered_p, rendered_t = {}, {}
    for ti in np.unique(pairs[:, 1]):
        rows = pairs[pairs[:, 1] == ti, 0]
        sub = work[rows]
        t = templates[int(ti)]
        for dest, src in ((rendered_p, t.prompt), (rendered_t, target_source(t, settings))):
            dest[int(ti)] = (rows, render_column(sub, src))
    prompt_of = _lookup(rendered_p, n, pick)
    target_of = _lookup(rendered_t, n, pick)

    if not single:
        q_prompt = prompt_of(np.arange(n), pick)
        q_target = target_of(np.arange(n), pick)
    is_cot = np.array([t.cot for t in templates], dtype=bool)[pick]

    def with_trigger(texts: pl.Series, rows: np.ndarray) -> pl.Series:
        """`texts` with a CoT trigger appended on `rows` (zero-shot prompts of CoT templates)."""
        if not settings.cot_triggers or not rows.any():
            return texts
        trig = pl.Series(settings.cot_triggers, dtype=pl.Utf8).gather(
            integers(keys, seed, f"{task}:cot-trigger", len(settings.cot_triggers)))
        return pl.select(pl.when(pl.Series(rows)).then(pl.concat_str([pl.lit(texts), pl.lit("\n\n"), trig]))
                         .otherwise(pl.lit(texts))).to_series()

    q_prompt = with_trigger(q_prompt, is_cot & ~few)

    exemplar_ids = pl.Series("exemplar_ids", [[]], dtype=pl.List(pl.Utf8)).new_from_index(0, n)  # no per-row Python
    prompt = q_prompt
    if few.any():
        sep = pl.Series(settings.separators, dtype=pl.Utf8).gather(
            integers(keys, seed, f"{task}:separator", len(settings.separators)))
        # Zero-shot rows point their (unused) exemplar slots at themselves: already rendered.
        ex = np.where(few[:, None], ex, np.arange(n)[:, None])
        flat_rows = ex.ravel()
        flat_tpl = np.repeat(pick, shots)
        pieces = pl.DataFrame({
            "p": prompt_of(flat_rows, flat_tpl), "t": target_of(flat_rows, flat_tpl),
            "s": sep.gather(np.repeat(np.arange(n), shots)),
        }).select(pl.concat_str([pl.col("p"), pl.lit(settings.answer_delimiter), pl.col("t"), pl.col("s")])
                  .alias("piece"))["piece"]
        keep = np.repeat(few[:, None], shots, axis=1)
        if settings.max_length is not None:
            budget = settings.max_length - lengths(q_prompt, settings)
            used = np.cumsum(lengths(pieces, settings).reshape(n, shots), axis=1)
            keep &= used <= budget[:, None]
        counts = keep.sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        kept = keep.ravel()
        joined = slice_joined(pieces.filter(pl.Series(kept)), offsets)
        prompt = pl.select(pl.concat_str([pl.lit(joined), pl.lit(q_prompt)])).to_series()
        # A few-shot row whose exemplars were all pruned is a zero-shot prompt: it gets the trigger too.
        prompt = with_trigger(prompt, is_cot & few & (counts == 0))
        ids = df["id"].cast(pl.Utf8).gather(flat_rows[kept])
        exemplar_ids = pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), ids.to_arrow()))
        exemplar_ids = exemplar_ids.cast(pl.List(pl.Utf8))
    tid = pl.Series([t.id for t in templates], dtype=pl.Utf8).gather(pick) if n else pl.Series([], dtype=pl.Utf8)
    return df.with_columns(prompt.alias("prompt"), q_target.alias("target"), tid.alias("template_id"),
                           exemplar_ids.alias("exemplar_ids"))


def _lookup(rendered: dict[int, tuple[np.ndarray, pl.Series]], n: int, pick: np.ndarray):
    """A function (rows, templates) -> rendered strings, from the per-template renderings."""
    frames = [pl.DataFrame({"row": rows, "tpl": np.full(rows.size, ti), "text": texts})
              for ti, (rows, texts) in rendered.items()]
    table = pl.concat(frames) if frames else pl.DataFrame(schema={"row": pl.Int64, "tpl": pl.Int64, "text": pl.Utf8})
    table = table.with_columns(pl.col("row").cast(pl.Int64), pl.col("tpl").cast(pl.Int64))

    def get(rows: np.ndarray, tpls: np.ndarray) -> pl.Series:
        q = pl.DataFrame({"row": rows.astype(np.int64), "tpl": tpls.astype(np.int64)})
        return q.join(table, on=["row", "tpl"], how="left", maintain_order="left")["text"]

    return get


def templates_json(templates: list[FlanTemplate]) -> str:
    """Canonical JSON of templates (for fingerprints and manifests)."""
    return json.dumps([t.model_dump() for t in templates], sort_keys=True)
