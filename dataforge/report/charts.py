"""Small inline-SVG charts for the report: histograms with quantile ticks and horizontal bars (no JavaScript)."""

from __future__ import annotations

from html import escape
from typing import Any


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:,.2f}"


def histogram_svg(hist: dict[str, Any], label: str, width: int = 440, height: int = 190,
                  color: str = "#4e79a7") -> str:
    """Bars of a `report.profile.histogram`: p0-p99 in equal bins, a hatched tail bin past p99,
    and ticks at the quartiles and p95 so the axis reads in the data's own terms."""
    counts, edges = hist["counts"], hist["edges"]
    if not counts:
        return '<p class="muted">no values</p>'
    tail = hist.get("tail", 0)
    pad_l, pad_b, pad_t, pad_r = 46, 44, 10, 10
    n = len(counts) + (1 if tail else 0)
    plot_w, plot_h = width - pad_l - pad_r, height - pad_b - pad_t
    top = max([*counts, tail]) or 1
    bar_w = plot_w / n
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1
    main_w = bar_w * len(counts)

    def x_of(v: float) -> float:
        return pad_l + main_w * (min(max(v, lo), hi) - lo) / span

    base = pad_t + plot_h
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" class="hist" role="img" '
             f'aria-label="histogram of {escape(label)}">']
    for i, c in enumerate(counts):
        h = plot_h * c / top
        parts.append(f'<rect x="{pad_l + i * bar_w + 0.5:.1f}" y="{base - h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                     f'height="{h:.1f}" fill="{color}"><title>{_num(edges[i])} to {_num(edges[i + 1])} '
                     f'{escape(hist["unit"])}: {c:,} rows</title></rect>')
    if tail:
        h = plot_h * tail / top
        x = pad_l + len(counts) * bar_w
        parts.append(f'<rect x="{x + 0.5:.1f}" y="{base - h:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
                     f'fill="#bab0ac" class="tail"><title>over p99 ({_num(hi)} to {_num(hist["quantiles"]["max"])} '
                     f'{escape(hist["unit"])}): {tail:,} rows</title></rect>')
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{base + 14}" font-size="10" text-anchor="middle">'
                     f'&gt;p99</text>')
    parts.append(f'<line x1="{pad_l}" y1="{base}" x2="{pad_l + plot_w}" y2="{base}" stroke="#555"/>')
    qs = hist["quantiles"]
    last_x = -99.0
    for name in ("min", "p25", "median", "p75", "p95"):
        if name not in qs:
            continue
        x = x_of(qs[name])
        parts.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="#555"/>')
        if x - last_x >= 34:
            parts.append(f'<text x="{x:.1f}" y="{base + 15}" font-size="10" text-anchor="middle">'
                         f'{_num(qs[name])}</text>')
            parts.append(f'<text x="{x:.1f}" y="{base + 26}" font-size="9" fill="#777" text-anchor="middle">'
                         f'{"p50" if name == "median" else name}</text>')
            last_x = x
    parts.append(f'<text x="{pad_l + plot_w / 2:.1f}" y="{height - 3}" font-size="10" fill="#555" '
                 f'text-anchor="middle">{escape(hist["unit"])} per row (ticks: quantiles)</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 9}" font-size="10" text-anchor="end">{top:,}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{base}" font-size="10" text-anchor="end">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars_html(items: list[tuple[str, int]], total: int | None = None, color: str = "#4e79a7",
              scale: int | None = None) -> str:
    """Labelled horizontal CSS bars with count and share of `total`; widths relative to `scale`
    (default: the largest item)."""
    if not items:
        return '<p class="muted">none</p>'
    top = scale or max(n for _, n in items) or 1
    rows = []
    for label, n in items:
        share = f" ({100 * n / total:.1f}%)" if total else ""
        rows.append(f'<tr><td class="label">{escape(str(label))}</td><td class="bar"><div style="width:'
                    f'{min(100.0, 100 * n / top):.1f}%;background:{color}"></div></td>'
                    f'<td class="num">{n:,}{share}</td></tr>')
    return '<table class="bars">' + "".join(rows) + "</table>"
