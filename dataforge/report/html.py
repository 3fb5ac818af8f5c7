"""The offline HTML page: inline CSS and SVG only, figure data embedded as JSON; nothing is fetched."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from dataforge.report import sunburst as sb
from dataforge.report.charts import bars_html, histogram_svg
from dataforge.report.data import ReportData

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1080px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 4px}.muted{color:#777}
table{border-collapse:collapse}td,th{padding:3px 8px;text-align:left;border-bottom:1px solid #eee}
th{background:#f6f6f6}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.bars td.label{white-space:nowrap}table.bars td.bar{width:260px}
table.bars td.bar div{height:12px;border-radius:2px}
.grid{display:flex;flex-wrap:wrap;gap:24px}.card{flex:0 0 auto}
.kpi{display:inline-block;margin-right:28px}.kpi b{font-size:20px;display:block}
"""


def _table(rows: list[dict[str, Any]], columns: list[str], numeric: set[str]) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f'<th class="{"num" if c in numeric else ""}">{escape(c)}</th>' for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            text = "" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))
            cells.append(f'<td class="{"num" if c in numeric else ""}">{escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _rejections(data: ReportData) -> str:
    if not data.rejections:
        return '<p class="muted">No step of this build rejected any row.</p>'
    by_step: dict[str, list[dict[str, Any]]] = {}
    for r in data.rejections:
        by_step.setdefault(r["step_id"], []).append(r)
    rows_in = {s["step_id"]: s["rows_in"] for s in data.steps}
    parts = []
    for step_id, reasons in by_step.items():
        n = sum(r["rows"] for r in reasons)
        parts.append(f'<div class="card"><h3>{escape(step_id)} <span class="muted">({n:,} rejected)</span></h3>')
        parts.append(bars_html([(r["reason"], r["rows"]) for r in reasons], total=rows_in.get(step_id)))
        parts.append("</div>")
    return '<div class="grid">' + "".join(parts) + "</div>"


def _sunburst(data: ReportData, segments: list[sb.Segment]) -> str:
    s = data.sunburst
    rows = max(s["rows"], 1)
    summary = (f'<p>{s["with_pair"]:,} of {s["rows"]:,} rows ({100 * s["with_pair"] / rows:.1f}%) have a root verb '
               f'with a direct-object noun; {s["distinct_verbs"]:,} distinct verbs, {s["distinct_pairs"]:,} distinct '
               f'pairs. Inner ring: the top {len(s["verbs"])} verbs; outer ring: their top nouns. '
               f'<span class="muted">Source: {escape(s["source"])}.</span></p>')
    pairs = [{"verb": v["verb"], "noun": n["noun"], "rows": n["rows"]} for v in s["verbs"] for n in v["nouns"]]
    pairs.sort(key=lambda p: -p["rows"])
    table = _table(pairs[:25], ["verb", "noun", "rows"], {"rows"})
    figure = sb.svg(segments) if segments else '<p class="muted">no verb-noun pairs to draw</p>'
    return (summary + f'<div class="grid"><div class="card" id="sunburst">{figure}</div>'
            f'<div class="card"><h3>most common pairs</h3>{table}</div></div>')


def render(data: ReportData, png_name: str | None = None) -> str:
    """The whole page as one string."""
    d = data.dataset
    segments = sb.layout(data.sunburst)
    kpis = "".join(f'<span class="kpi"><b>{v}</b>{escape(k)}</span>' for k, v in [
        ("rows", f"{d['rows']:,}"), ("version", d["version"]), ("columns", len(data.columns)),
        ("rejected in this build", f"{sum(r['rows'] for r in data.rejections):,}")])
    steps = _table(data.steps, ["step_id", "type", "status", "rows_in", "rows_out", "rejected", "seconds"],
                   {"rows_in", "rows_out", "rejected", "seconds"})
    hists = "".join(f'<div class="card"><h3>{escape(h["column"])} <span class="muted">mean {h["mean"]}, median '
                    f'{h["median"]}, max {h["max"]} {h["unit"]}</span></h3>{histogram_svg(h)}</div>'
                    for h in data.histograms) or '<p class="muted">no text columns</p>'
    png = f'<p class="muted">Also saved as <a href="{escape(png_name)}">{escape(png_name)}</a>.</p>' if png_name else ""
    payload = json.dumps(data.to_json(), default=str, ensure_ascii=False).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dataforge report: {escape(d['name'])} v{d['version']}</title>
<style>{CSS}</style></head>
<body>
<h1>{escape(d['name'])} <span class="muted">v{d['version']}</span></h1>
<p class="muted">build {escape(d['build_id'])}, step {escape(d['step_id'])}, created {escape(d['created_at'])}</p>
<div>{kpis}</div>
<h2>Rows through the build</h2>
{steps}
<h2>Rejection reasons per step</h2>
{_rejections(data)}
<h2>Lengths</h2>
<div class="grid">{hists}</div>
<h2>Verb-noun structure</h2>
{_sunburst(data, segments)}
{png}
<script type="application/json" id="report-data">{payload}</script>
</body></html>
"""
