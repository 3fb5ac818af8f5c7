"""Small inline-SVG charts for the report: histograms and horizontal bars (no JavaScript needed)."""

from __future__ import annotations

from html import escape
from typing import Any


def histogram_svg(hist: dict[str, Any], width: int = 420, height: int = 180, color: str = "#4e79a7") -> str:
    """Bars of a `report.data.histogram` result, with the axis range and hover counts."""
    counts, edges = hist["counts"], hist["edges"]
    if not counts:
        return '<p class="muted">no values</p>'
    pad_l, pad_b, pad_t = 40, 28, 8
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    top = max(counts) or 1
    bar_w = plot_w / len(counts)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" class="hist" role="img" aria-label="histogram of {escape(hist["column"])}">']
    for i, n in enumerate(counts):
        h = plot_h * n / top
        x = pad_l + i * bar_w
        parts.append(f'<rect x="{x + 1:.1f}" y="{pad_t + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="{color}"><title>{edges[i]}-{edges[i + 1] - 1} {hist["unit"]}: '
                     f"{n:,} rows</title></rect>")
    base = pad_t + plot_h
    parts.append(f'<line x1="{pad_l}" y1="{base}" x2="{pad_l + plot_w}" y2="{base}" stroke="#555"/>')
    parts.append(f'<text x="{pad_l}" y="{base + 16}" font-size="11">{edges[0]}</text>')
    parts.append(f'<text x="{pad_l + plot_w}" y="{base + 16}" font-size="11" text-anchor="end">{hist["max"]}</text>')
    parts.append(f'<text x="{pad_l + plot_w / 2}" y="{base + 16}" font-size="11" text-anchor="middle">'
                 f'{escape(hist["unit"])}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 10}" font-size="11" text-anchor="end">{top:,}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{base}" font-size="11" text-anchor="end">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars_html(items: list[tuple[str, int]], total: int | None = None, color: str = "#e15759") -> str:
    """A table of labelled horizontal CSS bars (count and share of `total`)."""
    if not items:
        return '<p class="muted">none</p>'
    top = max(n for _, n in items) or 1
    rows = []
    for label, n in items:
        share = f" ({100 * n / total:.1f}%)" if total else ""
        rows.append(f'<tr><td class="label">{escape(label)}</td><td class="bar"><div style="width:{100 * n / top:.1f}%;'
                    f'background:{color}"></div></td><td class="num">{n:,}{share}</td></tr>')
    return '<table class="bars">' + "".join(rows) + "</table>"
