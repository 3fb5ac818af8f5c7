"""What a dataset report shows, gathered from the catalog with read-only queries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from dataforge.catalog import query as q
from dataforge.errors import UserError
from dataforge.steps.base import ID, PARENT
from dataforge.textutil.words import word_count

TOP_VERBS = 20
NOUNS_PER_VERB = 4
HIST_BINS = 20


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


@dataclass
class ReportData:
    """Everything the HTML page and the PNG are drawn from (also embedded in the page as JSON)."""

    dataset: dict[str, Any]
    steps: list[dict[str, Any]]
    rejections: list[dict[str, Any]]
    histograms: list[dict[str, Any]]
    sunburst: dict[str, Any]
    columns: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def text_columns(df: pl.DataFrame) -> list[str]:
    """String columns a person reads (not ids, not verb/noun labels, not private `_` columns)."""
    skip = {ID, PARENT, "verb", "noun", "semantic_nearest_id"}
    return [c for c, t in df.schema.items() if t == pl.Utf8 and c not in skip and not c.startswith("_")]


def histogram(values: pl.Series, bins: int = HIST_BINS) -> dict[str, Any]:
    """Counts of `values` in equal-width integer bins, plus summary statistics."""
    v = values.drop_nulls()
    if v.len() == 0:
        return {"edges": [], "counts": [], "mean": None, "median": None, "min": None, "max": None}
    lo, hi = int(v.min()), int(v.max())
    width = max(1, -(-(hi - lo + 1) // bins))
    idx = ((v - lo) // width).cast(pl.Int64)
    counts = idx.value_counts().sort(idx.name)
    full = [0] * (int(idx.max()) + 1)
    for b, n in counts.iter_rows():
        full[b] = n
    return {"edges": [lo + i * width for i in range(len(full) + 1)], "counts": full, "mean": round(float(v.mean()), 2),
            "median": float(v.median()), "min": lo, "max": hi}


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
    return {"rows": total, "with_pair": pairs.height, "with_verb": df["verb"].is_not_null().sum(),
            "distinct_verbs": pairs["verb"].n_unique(), "distinct_pairs": counts.height, "verbs": out}


def collect(catalog: Path, name: str, version: int | None = None, column: str | None = None) -> ReportData:
    """Read the dataset, its build's steps and rejections, and derive histograms and verb-noun counts."""
    table, version = q.dataset_table(catalog, name, version)
    info = q.run_select(catalog, f"select * from datasets where name = {_lit(name)} and version = {int(version)}")
    meta = info.to_dicts()[0]
    df = q.run_select(catalog, f'select * from "{table}"')
    build = meta["build_id"]
    steps = q.run_select(catalog, f"""
        select s.step_id, s.type, s.status, s.rows_in, s.rows_out, s.rejected, round(s.seconds, 3) as seconds,
               s.fingerprint
        from steps s where s.build_id = {_lit(build)} order by s.rowid""")
    rejections = q.run_select(catalog, f"""
        select s.step_id, r.reason, count(*) as rows, round(avg(r.score), 4) as mean_score
        from rejections r join (select distinct step_id, fingerprint from steps where build_id = {_lit(build)}) s
          on r.fingerprint = s.fingerprint
        group by all order by s.step_id, rows desc, r.reason""")

    cols = text_columns(df)
    histograms = [{"column": c, "unit": "words", **histogram(df.select(word_count(pl.col(c)))[c])} for c in cols]

    if "verb" in df.columns and "noun" in df.columns:
        verbs, nouns, source = df["verb"].to_list(), df["noun"].to_list(), "dataset columns verb/noun"
    else:
        column = column or ("instruction" if "instruction" in df.columns else (cols[0] if cols else None))
        if column is None or column not in df.columns:
            raise UserError(f"dataset {name!r} has no text column to parse for verbs and nouns"
                            + (f" (no column {column!r})" if column else "") + "; pass --column")
        from dataforge.steps.filter.verb_noun import extract_verb_noun

        verbs, nouns = extract_verb_noun(df[column].to_list())
        source = f"parsed from column {column!r} (filter.verb_noun rules)"
    sunburst = {**sunburst_data(verbs, nouns), "source": source}

    dataset = {"name": name, "version": version, "rows": df.height, "build_id": build, "step_id": meta["step_id"],
               "created_at": str(meta["created_at"]), "fingerprint": meta["fingerprint"]}
    return ReportData(dataset=dataset, steps=steps.drop("fingerprint").to_dicts(), rejections=rejections.to_dicts(),
                      histograms=histograms, sunburst=sunburst, columns=df.columns)
