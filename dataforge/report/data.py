"""What a dataset report shows, gathered from the catalog with read-only queries."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from dataforge.catalog import query as q
from dataforge.errors import UserError
from dataforge.report import panels
from dataforge.report.profile import kind_of, profile
from dataforge.sqlquote import quote_literal

TOP_VERBS = 20
NOUNS_PER_VERB = 4
SAMPLE_ROWS = 8
TABLE_ROWS = 300
VERB_NOUN_ROWS = 5_000
"""Instructions parsed for the verb-noun sunburst at most (a seeded sample past that): spaCy parses
~300 a second here, so a million would take the report an hour; 5,000 rank the top verbs as well."""
EXAMPLES_PER_REASON = 3
INSTRUCTION_LIKE = re.compile(r"instruction", re.I)
NEAR_DUPLICATE_REASONS = {"rouge_l", "semantic_duplicate"}


@dataclass
class ReportData:
    """Everything the HTML page and the PNG are drawn from (also embedded in the page as JSON)."""

    dataset: dict[str, Any]
    steps: list[dict[str, Any]]
    rejections: list[dict[str, Any]]
    sunburst: dict[str, Any]
    columns: list[str] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)
    head: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    panels: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sunburst_data(verbs: list[str | None], nouns: list[str | None], top_verbs: int = TOP_VERBS,
                  nouns_per_verb: int = NOUNS_PER_VERB) -> dict[str, Any]:
    """The top verbs (by rows with a verb-noun pair) and each one's top nouns, as in the Self-Instruct figure."""
    df = pl.DataFrame({"verb": verbs, "noun": nouns}, schema={"verb": pl.Utf8, "noun": pl.Utf8})
    total = df.height
    pairs = df.drop_nulls()
    counts = pairs.group_by("verb", "noun").len("n").sort(["n", "verb", "noun"], descending=[True, False, False])
    top = (pairs.group_by("verb").len("n").sort(["n", "verb"], descending=[True, False]).head(top_verbs))
    out = []
    for verb, n_verb in top.iter_rows():
        nouns_of = counts.filter(pl.col("verb") == verb).head(nouns_per_verb)
        out.append({"verb": verb, "rows": n_verb,
                    "nouns": [{"noun": nn, "rows": c} for _, nn, c in nouns_of.iter_rows()]})
    return {"rows": total, "with_pair": pairs.height, "with_verb": int(df["verb"].is_not_null().sum()),
            "distinct_verbs": pairs["verb"].n_unique(), "distinct_pairs": counts.height, "verbs": out}


def ancestors(steps: pl.DataFrame, target: str) -> list[dict[str, Any]]:
    """The build's steps that the dataset's step reads, directly or not (the stored DAG), in run order."""
    by_id = {r["step_id"]: r for r in steps.to_dicts()}
    need, todo = set(), [target]
    while todo:
        sid = todo.pop()
        if sid in need or sid not in by_id:
            continue
        need.add(sid)
        todo.extend(by_id[sid].get("inputs") or [])
    return [r for r in steps.to_dicts() if r["step_id"] in need]


def instruction_column(df: pl.DataFrame, column: str | None) -> tuple[str | None, str]:
    """The column verb-noun parsing reads: `--column`, else one named like `instruction`; else a note why none."""
    if column is not None:
        if column not in df.columns:
            raise UserError(f"--column {column!r}: the dataset has no such column; it has: {', '.join(df.columns)}")
        return column, f"column {column!r} (--column)"
    named = [c for c in df.columns if INSTRUCTION_LIKE.search(c) and df.schema[c] == pl.Utf8]
    if named:
        return named[0], f"column {named[0]!r} (named like an instruction)"
    return None, ("skipped: no instruction-like column (none is named like `instruction`); "
                  "pass --column NAME to parse one")


def _text_column(columns: dict[str, pl.DataType], frame: pl.DataFrame | None = None) -> str | None:
    for c in columns:
        if INSTRUCTION_LIKE.search(c):
            return c
    for c in ("text", "prompt", "question", "input", "output"):
        if c in columns:
            return c
    strs = [c for c, t in columns.items() if t == pl.Utf8 and c != "id"]
    if frame is not None:
        strs = [c for c in strs if kind_of(c, frame[c]) == "text"]
    return strs[0] if strs else None


def _examples(catalog: Path, build: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A few rejected rows per (step, reason) with their text; for near-duplicates the nearest kept row's text."""
    fp_of = {s["step_id"]: s["fingerprint"] for s in steps}
    tables = q.stored_outputs(catalog)
    out = []
    for s in steps:
        if not s["rejected"]:
            continue
        inputs = [tables[fp_of[i]] for i in (s.get("inputs") or []) if i in fp_of and fp_of[i] in tables]
        if not inputs:
            continue
        cols = {c: pl.Utf8 for c in q.output_columns(catalog, inputs[0])}
        text = _text_column(cols)
        if text is None:
            continue
        union = " union all ".join(f'select id, "{text}"::varchar as text from "{t}"' for t in inputs)
        rows = q.run_select(catalog, f"""
            with src as ({union}),
            r as (select reason, row_id, score, detail,
                         row_number() over (partition by reason order by score desc nulls last, row_id) as k
                  from rejections where fingerprint = {quote_literal(s['fingerprint'])})
            select r.reason, r.row_id, r.score, r.detail, a.text, b.text as nearest_text
            from r left join (select distinct on (id) * from src) a on a.id = r.row_id
                   left join (select distinct on (id) * from src) b on b.id = r.detail
            where r.k <= {EXAMPLES_PER_REASON} order by r.reason, r.k""")
        for r in rows.to_dicts():
            r["near_duplicate"] = r["reason"] in NEAR_DUPLICATE_REASONS
            out.append({"step_id": s["step_id"], "column": text, **r})
    return _jsonable(out)


CELL_CHARS = 2_000
"""Characters of a value the report keeps (the rest is cut with `…`): a page of rows, not the whole data."""


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def cut(v: Any) -> Any:
        v = v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
        return v[:CELL_CHARS] + "…" if isinstance(v, str) and len(v) > CELL_CHARS else v

    return [{k: cut(v) for k, v in r.items()} for r in rows]


def collect(catalog: Path, name: str, version: int | None = None, column: str | None = None,
            seed: int = 0) -> ReportData:
    """Read the dataset, its ancestor steps and their rejections; profile columns; pick panels."""
    table, version = q.dataset_table(catalog, name, version)
    meta = q.run_select(catalog, f"select * from datasets where name = {quote_literal(name)} and version = {int(version)}"
                        ).to_dicts()[0]
    df = q.run_select(catalog, f'select * from "{table}"')
    build = meta["build_id"]
    all_steps = q.run_select(catalog, f"""
        select s.step_id, s.type, s.status, s.rows_in, s.rows_out, s.rejected, round(s.seconds, 3) as seconds,
               s.fingerprint, s.inputs, o.build_id as built_by
        from steps s left join step_outputs o using (fingerprint)
        where s.build_id = {quote_literal(build)} order by s.rowid""")
    steps = ancestors(all_steps, meta["step_id"])
    fps = [s["fingerprint"] for s in steps]
    rejections = q.run_select(catalog, f"""
        select s.step_id, r.reason, count(*) as rows, round(avg(r.score), 4) as mean_score
        from rejections r join (select distinct step_id, fingerprint from steps where build_id = {quote_literal(build)}) s
          on r.fingerprint = s.fingerprint
        where r.fingerprint in ({", ".join(map(quote_literal, fps)) or "''"})
        group by all order by s.step_id, rows desc, r.reason""").to_dicts()

    task = "task" if "task" in df.columns else None
    profiles = profile(df, task)
    text_col, source = instruction_column(df, column)
    if "verb" in df.columns and "noun" in df.columns:
        verbs, nouns, source = df["verb"].to_list(), df["noun"].to_list(), "dataset columns verb/noun"
    elif text_col is not None:
        from dataforge.textutil.verbnoun import extract_verb_noun

        texts = df[text_col].cast(pl.Utf8)
        of = ""
        if texts.len() > VERB_NOUN_ROWS:
            texts = texts.sample(VERB_NOUN_ROWS, seed=seed)
            of = f", a seeded sample of {VERB_NOUN_ROWS:,} of its {df.height:,} rows"
        verbs, nouns = extract_verb_noun(texts.to_list())
        source = f"parsed from {source}{of} with filter.verb_noun's rules"
    else:
        verbs, nouns = [], []
    sunburst = {**sunburst_data(verbs, nouns), "source": source, "skipped": not verbs and text_col is None}

    shown = [c for c in df.columns]
    sample = df.sample(min(SAMPLE_ROWS, df.height), seed=seed) if df.height else df
    llm_steps = [(s["step_id"], s["built_by"] or build) for s in steps if s["type"].startswith("generate.")]
    found = {"symbols": panels.symbols(df), "graded": panels.graded(df), "llm": panels.llm(catalog, llm_steps)}
    dataset = {"name": name, "version": version, "rows": df.height, "build_id": build, "step_id": meta["step_id"],
               "created_at": str(meta["created_at"]), "fingerprint": meta["fingerprint"], "seed": seed}
    for s in steps:
        s.pop("built_by", None)
        s["inputs"] = list(s.get("inputs") or [])
    return ReportData(dataset=dataset, steps=steps, rejections=rejections, sunburst=sunburst, columns=df.columns,
                      profiles=profiles, sample=_jsonable(sample.select(shown).to_dicts()),
                      head=_jsonable(df.head(TABLE_ROWS).to_dicts()), examples=_examples(catalog, build, steps),
                      panels={k: v for k, v in found.items() if v})
