"""The verb-noun sunburst: one layout, drawn as inline SVG (HTML page) and as a PNG (matplotlib).

Inner ring: the top verbs; outer ring: each verb's top nouns. Arc angles are proportional to
row counts; a verb's arc spans exactly its nouns' arcs, as in the Self-Instruct paper's figure.
"""

from __future__ import annotations

import colorsys
import math
import warnings
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

# Ring radii as fractions of the outer radius.
HOLE, INNER, OUTER = 0.22, 0.58, 1.0
START = 90.0  # degrees; arcs run counter-clockwise from 12 o'clock
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#aec7e8"]


@dataclass
class Segment:
    ring: int  # 0 = verb, 1 = noun
    label: str
    rows: int
    theta1: float  # degrees, counter-clockwise from the x axis
    theta2: float
    color: str
    parent: str | None = None

    @property
    def span(self) -> float:
        return self.theta2 - self.theta1

    @property
    def mid(self) -> float:
        return (self.theta1 + self.theta2) / 2


def _tint(hex_color: str, amount: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    h, l, s = colorsys.rgb_to_hls(r, g, b)
    r, g, b = colorsys.hls_to_rgb(h, min(0.92, l + amount * (1 - l)), s)
    return "#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in (r, g, b)))


def layout(sunburst: dict[str, Any]) -> list[Segment]:
    """Segments for both rings from `report.data.sunburst_data` output."""
    verbs = [v for v in sunburst["verbs"] if v["nouns"]]
    total = sum(n["rows"] for v in verbs for n in v["nouns"])
    if total == 0:
        return []
    segments: list[Segment] = []
    angle = START
    for i, v in enumerate(verbs):
        color = PALETTE[i % len(PALETTE)]
        v_start = angle
        for j, n in enumerate(v["nouns"]):
            span = 360.0 * n["rows"] / total
            segments.append(Segment(1, n["noun"], n["rows"], angle, angle + span, _tint(color, 0.25 + 0.15 * j),
                                    v["verb"]))
            angle += span
        segments.append(Segment(0, v["verb"], sum(n["rows"] for n in v["nouns"]), v_start, angle, color))
    return segments


def _point(r: float, deg: float, cx: float, cy: float) -> tuple[float, float]:
    rad = math.radians(deg)
    return cx + r * math.cos(rad), cy - r * math.sin(rad)


def _arc_path(r0: float, r1: float, t1: float, t2: float, cx: float, cy: float) -> str:
    if t2 - t1 >= 359.999:  # a full ring: two half arcs
        t2 = t1 + 359.999
    large = 1 if t2 - t1 > 180 else 0
    x1, y1 = _point(r1, t1, cx, cy)
    x2, y2 = _point(r1, t2, cx, cy)
    x3, y3 = _point(r0, t2, cx, cy)
    x4, y4 = _point(r0, t1, cx, cy)
    return (f"M{x1:.2f},{y1:.2f} A{r1:.2f},{r1:.2f} 0 {large} 0 {x2:.2f},{y2:.2f} "
            f"L{x3:.2f},{y3:.2f} A{r0:.2f},{r0:.2f} 0 {large} 1 {x4:.2f},{y4:.2f} Z")


def _label_rotation(mid: float) -> tuple[float, str]:
    """Text rotation (degrees, counter-clockwise) reading outwards, flipped on the left half."""
    m = mid % 360
    if 90 < m < 270:
        return m - 180, "end"
    return m, "start"


def _min_label_span(ring: int) -> float:
    return 1.8 if ring else 3.0


def svg(segments: list[Segment], size: int = 640, title: str = "verb-noun sunburst") -> str:
    """A self-contained `<svg>` element; hover titles give exact counts."""
    cx = cy = size / 2
    R = size / 2 - 4
    radii = {0: (HOLE * R, INNER * R), 1: (INNER * R, OUTER * R)}
    parts = [f'<svg viewBox="0 0 {size} {size}" width="{size}" height="{size}" '
             f'role="img" aria-label="{escape(title)}" class="sunburst">']
    for s in segments:
        r0, r1 = radii[s.ring]
        what = f"{s.parent} {s.label}" if s.parent else s.label
        parts.append(f'<path d="{_arc_path(r0, r1, s.theta1, s.theta2, cx, cy)}" fill="{s.color}" stroke="#fff" '
                     f'stroke-width="1" data-ring="{s.ring}" data-label="{escape(what)}" data-rows="{s.rows}">'
                     f"<title>{escape(what)}: {s.rows:,} rows</title></path>")
    for s in segments:
        if s.span < _min_label_span(s.ring):
            continue
        r0, r1 = radii[s.ring]
        rot, anchor = _label_rotation(s.mid)
        x, y = _point(r0 + 4, s.mid, cx, cy)  # text runs outwards from the inner edge on both halves
        font = 12 if s.ring == 0 else (10 if s.span >= 3 else 7)
        parts.append(f'<text x="{x:.2f}" y="{y:.2f}" transform="rotate({-rot:.2f} {x:.2f} {y:.2f})" '
                     f'text-anchor="{anchor}" dominant-baseline="middle" font-size="{font}" '
                     f'font-weight="{"bold" if s.ring == 0 else "normal"}" pointer-events="none">'
                     f"{escape(s.label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def png(segments: list[Segment], path: Path, title: str = "", dpi: int = 150) -> Path:
    """The same figure as a PNG, drawn with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Wedge

    fig, ax = plt.subplots(figsize=(8, 8), dpi=dpi)
    radii = {0: (HOLE, INNER), 1: (INNER, OUTER)}
    for s in segments:
        r0, r1 = radii[s.ring]
        ax.add_patch(Wedge((0, 0), r1, s.theta1, s.theta2, width=r1 - r0, facecolor=s.color, edgecolor="white",
                           linewidth=0.8))
    for s in segments:
        if s.span < _min_label_span(s.ring):
            continue
        r0, r1 = radii[s.ring]
        rot, anchor = _label_rotation(s.mid)
        x, y = _point(r0 + 0.015, s.mid, 0, 0)
        ax.text(x, -y, s.label, rotation=rot, rotation_mode="anchor", ha="left" if anchor == "start" else "right",
                va="center", fontsize=8 if s.ring == 0 else (6.5 if s.span >= 3 else 5), fontweight="bold" if s.ring == 0 else "normal")
    if not segments:
        ax.text(0, 0, "no verb-noun pairs", ha="center", va="center")
    ax.set_xlim(-1.02, 1.02)
    ax.set_ylim(-1.02, 1.02)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # an emoji verb or noun: drawn as a box, not worth a warning in the shell
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
