"""The offline HTML page: inline CSS and SVG only, figure data embedded as JSON; nothing is fetched."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from dataforge.display import CONTROL, escape_control
from dataforge.report import sunburst as sb
from dataforge.report.charts import bars_html, histogram_svg
from dataforge.report.data import ReportData

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1240px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 4px}.muted{color:#777}nav a{margin-right:12px}
table{border-collapse:collapse}td,th{padding:3px 8px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f6f6f6;position:sticky;top:0}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.bars td.label{white-space:nowrap;max-width:320px;overflow:hidden;text-overflow:ellipsis}
table.bars td.bar{width:220px}table.bars td.bar div{height:12px;border-radius:2px;min-width:1px}
.grid{display:flex;flex-wrap:wrap;gap:20px}.card{flex:0 0 auto;border:1px solid #eee;border-radius:6px;padding:8px 12px}
.kpi{display:inline-block;margin-right:28px}.kpi b{font-size:20px;display:block}
.rows{max-height:560px;overflow:auto;border:1px solid #eee}
.rows td{max-width:420px;white-space:pre-wrap;overflow-wrap:break-word;font-size:13px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:10px}.pair div{background:#fafafa;padding:6px;border-radius:4px;
white-space:pre-wrap;overflow-wrap:anywhere}.score{font-weight:bold}
td.rejbar div{height:12px;background:#e15759;border-radius:2px;min-width:1px}td.rejbar{width:180px}
"""


def _cell(v: Any, limit: int = 600) -> str:
    if v is None:
        return '<span class="muted">null</span>'
    text = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
    if len(text) > limit:
        text = text[:limit] + "…"
    # As in the terminal: ESC, NUL, BEL and bidi overrides shown as escapes (U+202E would make
    # "gnp.exe" read "exe.png"); newlines stay, the table wraps them.
    return escape(escape_control(text, keep_newlines=True))


def _table(rows: list[dict[str, Any]], columns: list[str], numeric: set[str] = frozenset(), cls: str = "",
           tid: str = "") -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f'<th class="{"num" if c in numeric else ""}">{escape(c)}</th>' for c in columns)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if c in numeric else ""}">{_cell(r.get(c))}</td>'
                                    for c in columns) + "</tr>" for r in rows)
    table = f'<table{f" id={tid!r}" if tid else ""}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="{cls}">{table}</div>' if cls else table


def _build(data: ReportData) -> str:
    rows = []
    for s in data.steps:
        rin, rout, rej = s["rows_in"], s["rows_out"], s["rejected"] or 0
        source = s["type"].startswith("source.")
        if source:
            rin = rin or None  # the rows a source read (0 in catalogs from before sources recorded them)
        adds = rin is None or rout is None or rin == rout + rej
        share = (rej / rin) if rin else 0.0
        note = "" if adds else f'<span class="muted"> ({"limit / sample" if source else "makes rows"})</span>'
        shown = '<span class=muted>source</span>' if source and rin is None else _cell(rin)
        rows.append(f"<tr><td>{escape(s['step_id'])}</td><td>{escape(s['type'])}</td><td>{escape(s['status'])}</td>"
                    f"<td class=num>{shown}</td><td class=num>{_cell(rout)}</td><td class=num>{rej:,}</td>"
                    f'<td class="rejbar" title="{100 * share:.1f}% of its input rejected">'
                    + (f'<div style="width:{100 * share:.1f}%"></div>' if rej else "")  # no tick for nothing
                    + f'</td><td class=num>{100 * share:.1f}%{note}</td>'
                    f"<td>{escape(', '.join(s['inputs']))}</td></tr>")
    return ('<p class="muted">Only the steps this dataset is built from (its ancestors in the stored DAG). '
            'A red bar is the share of the step\'s input it rejected.</p>'
            '<table id="build-table"><thead><tr><th>step</th><th>type</th><th>status</th><th class=num>rows in</th>'
            '<th class=num>rows out</th><th class=num>rejected</th><th>rejected share of input</th><th></th>'
            '<th>inputs</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def _rejections(data: ReportData) -> str:
    if not data.rejections:
        return '<p class="muted">No step this dataset is built from rejected any row.</p>'
    rows_in = {s["step_id"]: s["rows_in"] for s in data.steps}
    by_step: dict[str, list[dict[str, Any]]] = {}
    for r in data.rejections:
        by_step.setdefault(r["step_id"], []).append(r)
    parts = []
    for step_id, reasons in by_step.items():
        n = sum(r["rows"] for r in reasons)
        total = rows_in.get(step_id)
        parts.append(f'<div class="card"><h3>{escape(step_id)} <span class="muted">({n:,} of {_cell(total)} '
                     f'input rows rejected)</span></h3>')
        parts.append(bars_html([(r["reason"], r["rows"]) for r in reasons], total=total, color="#e15759",
                               scale=total))
        parts.append("</div>")
    out = ['<div class="grid">' + "".join(parts) + "</div>", "<h3>Examples of rejected rows</h3>"]
    if not data.examples:
        out.append('<p class="muted">no rejected row could be shown (its input text is not stored)</p>')
    for e in data.examples:
        score = f'<span class="score">score {e["score"]:.3f}</span> ' if e["score"] is not None else ""
        head = (f'<p class="example-head"><b>{escape(e["step_id"])}</b> · {escape(e["reason"])} {score}'
                f'<span class="muted">{escape(e["column"])}, row {escape(e["row_id"])}</span></p>')
        if e["near_duplicate"] and e.get("nearest_text") is not None:
            body = (f'<div class="pair near-dup"><div><span class="muted">dropped</span>\n{_cell(e["text"])}</div>'
                    f'<div><span class="muted">nearest kept row {escape(str(e["detail"]))}</span>\n'
                    f'{_cell(e["nearest_text"])}</div></div>')
        else:
            detail = f'<p class="muted">{_cell(e["detail"])}</p>' if e["detail"] else ""
            body = f'<div class="pair"><div>{_cell(e["text"])}</div></div>{detail}'
        out.append(f'<div class="example">{head}{body}</div>')
    return "".join(out)


def _profile(p: dict[str, Any], rows: int) -> str:
    kind = p["kind"]
    nulls = f", {p['nulls']:,} null" if p["nulls"] else ""
    head = (f'<h3>{escape(p["column"])} <span class="muted">{kind} · {escape(p["dtype"])}{nulls}</span></h3>')
    if kind in ("categorical", "bool"):
        items = list(p["values"]) + ([("(other values)", p["other"])] if p["other"] else [])
        body = f'<p class="muted">{p["distinct"]:,} distinct</p>' + bars_html(items, total=rows)
        if p.get("per_task"):
            lines = []
            for t in p["per_task"]:
                vals = ", ".join(f"{escape(str(v))}: {n:,}" for v, n in t["values"][:6])
                imb = f'{t["imbalance"]}×' if t["imbalance"] else "–"
                lines.append(f"<tr><td>{escape(str(t['task']))}</td><td class=num>{t['rows']:,}</td>"
                             f"<td>{vals}</td><td class=num>{imb}</td></tr>")
            body += ('<table class="balance"><thead><tr><th>task</th><th class=num>rows</th><th>values</th>'
                     '<th class=num>largest/smallest</th></tr></thead><tbody>' + "".join(lines) + "</tbody></table>")
    elif "hist" in p:
        h = p["hist"]
        qs = h.get("quantiles", {})
        stats = ", ".join(f"{k} {qs[k]:,.4g}" for k in ("median", "p95", "max") if k in qs)
        body = (f'<p class="muted">{stats}{"; " + escape(p["note"]) if p.get("note") else ""}</p>'
                + histogram_svg(h, p["column"]))
    else:
        body = f'<p class="muted">{escape(p.get("note", ""))}</p>'
    return f'<div class="card profile" data-kind="{kind}">{head}{body}</div>'


def _sunburst(data: ReportData, segments: list[sb.Segment]) -> str:
    s = data.sunburst
    if s.get("skipped"):
        return f'<p class="note" id="verb-noun-note">Verb-noun structure {escape(s["source"])}.</p>'
    rows = max(s["rows"], 1)
    summary = (f'<p>{s["with_pair"]:,} of {s["rows"]:,} rows ({100 * s["with_pair"] / rows:.1f}%) have a root verb '
               f'with a direct-object noun; {s["distinct_verbs"]:,} distinct verbs, {s["distinct_pairs"]:,} distinct '
               f'pairs. <span class="muted">Source: {escape(s["source"])}.</span></p>')
    pairs = [{"verb": v["verb"], "noun": n["noun"], "rows": n["rows"]} for v in s["verbs"] for n in v["nouns"]]
    pairs.sort(key=lambda p: -p["rows"])
    figure = sb.svg(segments) if segments else '<p class="muted">no verb-noun pairs to draw</p>'
    return (summary + f'<div class="grid"><div class="card" id="sunburst">{figure}</div>'
            f'<div class="card"><h3>most common pairs</h3>{_table(pairs[:25], ["verb", "noun", "rows"], {"rows"})}'
            "</div></div>")


def _panels(data: ReportData) -> str:
    out = []
    sym = data.panels.get("symbols")
    if sym:
        out.append(f'<section id="panel-symbols"><h2>Symbol-tuning prompts</h2><p>{sym["prompts"]:,} prompts, '
                   f'{sym["distinct_symbols"]:,} distinct symbols.</p><div class="grid">'
                   f'<div class="card"><h3>exemplars per class (k)</h3>{bars_html(sym["k_per_class"], sym["prompts"])}</div>'
                   f'<div class="card"><h3>classes per prompt</h3>{bars_html(sym["classes"], sym["prompts"])}</div>'
                   f'<div class="card"><h3>symbol pools drawn</h3>{bars_html(sym["symbol_kinds"])}</div>'
                   f'<div class="card"><h3>formats drawn</h3>{bars_html(sym["formats"], sym["prompts"])}</div>'
                   + (f'<div class="card"><h3>symbols used in several prompts</h3>{bars_html(sym["top_symbols"])}</div>'
                      if sym["top_symbols"] else "")
                   + (f'<div class="card"><h3>prompts per task</h3>{bars_html(sym["tasks"], sym["prompts"])}</div>'
                      if sym["tasks"] else "") + "</div></section>")
    g = data.panels.get("graded")
    if g:
        qline = (f'{g["questions"]:,} questions ({g["question_column"]}); {g["all_wrong"]:,} with no correct '
                 f'rationale, {g["all_right"]:,} with no wrong one.' if g.get("question_column") else
                 "no question column to group by.")
        per_q = bars_html([(f"{p} correct", n) for p, n in g.get("positives_per_question", [])],
                          g.get("questions"))
        examples = g.get("all_wrong_examples", [])
        wrong = "".join(f"<li>{_cell(t, 300)}</li>" for t in examples)
        if wrong and g["all_wrong"] > len(examples):
            wrong += f'<li class="muted">and {g["all_wrong"] - len(examples):,} more</li>'

        out.append(f'<section id="panel-graded"><h2>Graded rationales</h2><p>{g["rows"]:,} graded rows: '
                   f'{g["positive"]:,} positive, {g["negative"]:,} negative. {escape(qline)}</p><div class="grid">'
                   f'<div class="card"><h3>positives per question</h3>{per_q}</div>'
                   f'<div class="card"><h3>grade reasons</h3>{bars_html(g["reasons"], g["rows"])}</div>'
                   + (f'<div class="card"><h3>questions answered wrongly every time</h3><ul>{wrong}</ul></div>'
                      if wrong else "") + "</div></section>")
    calls = data.panels.get("llm")
    if calls:
        cols = ["step_id", "model", "calls", "ok", "input_tokens", "output_tokens", "cost_usd", "p50_ms", "p90_ms",
                "p99_ms"]
        out.append('<section id="panel-llm"><h2>LLM steps</h2><p class="muted">From <code>llm_calls</code>, for the '
                   "build that made each step's output; latency in milliseconds.</p>"
                   + _table(calls, cols, set(cols[2:]), tid="llm-table") + "</section>")
    return "".join(out)


def render(data: ReportData, png_name: str | None = None) -> str:
    """The whole page as one string."""
    d = data.dataset
    segments = sb.layout(data.sunburst)
    kpis = "".join(f'<span class="kpi"><b>{v}</b>{escape(k)}</span>' for k, v in [
        ("rows", f"{d['rows']:,}"), ("version", d["version"]), ("columns", len(data.columns)),
        ("rejected on the way", f"{sum(r['rows'] for r in data.rejections):,}")])
    rows = d["rows"]
    profiles = "".join(_profile(p, rows) for p in data.profiles)
    cols = data.columns
    sample = _table(data.sample, cols, cls="rows", tid="sample-table")
    head = _table(data.head, cols, cls="rows", tid="rows-table")
    png = f'<p class="muted">Also saved as <a href="{escape(png_name)}">{escape(png_name)}</a>.</p>' \
        if png_name and not data.sunburst.get("skipped") else ""
    payload = json.dumps(data.to_json(), default=str, ensure_ascii=False).replace("</", "<\\/")
    # JSON's own escapes (`\u202e`) for what the tables show escaped: the same data, no raw bidi
    # overrides or ESC bytes in the page's source.
    payload = CONTROL.sub(lambda m: f"\\u{ord(m.group(0)):04x}", payload)
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in [
        ("build", "build"), ("rejections", "rejections"), ("columns", "columns"), ("sample", "sample rows"),
        ("rows", "rows"), ("verb-noun", "verb-noun")])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dataforge report: {escape(d['name'])} v{d['version']}</title>
<style>{CSS}</style></head>
<body>
<h1>{escape(d['name'])} <span class="muted">v{d['version']}</span></h1>
<p class="muted">build {escape(d['build_id'])}, step {escape(d['step_id'])}, created {escape(d['created_at'])}</p>
<div>{kpis}</div>
<nav>{nav}</nav>
{_panels(data)}
<section id="build"><h2>Rows through the build</h2>{_build(data)}</section>
<section id="rejections"><h2>Rejections</h2>{_rejections(data)}</section>
<section id="columns"><h2>Columns</h2><div class="grid">{profiles}</div></section>
<section id="sample"><h2>Sample rows</h2><p class="muted">{len(data.sample)} rows drawn with seed {d['seed']}.</p>{sample}</section>
<section id="rows"><h2>First rows</h2><p class="muted">The first {len(data.head):,} of {rows:,} rows; scroll inside the table.</p>{head}</section>
<section id="verb-noun"><h2>Verb-noun structure</h2>{_sunburst(data, segments)}{png}</section>
<script type="application/json" id="report-data">{payload}</script>
</body></html>
"""
