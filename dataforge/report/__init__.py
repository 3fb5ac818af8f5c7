"""`dataforge report`: an offline HTML page (and a sunburst PNG) describing one catalog dataset."""

from __future__ import annotations

from pathlib import Path

from dataforge.report import sunburst
from dataforge.report.data import ReportData, collect
from dataforge.report.html import render

__all__ = ["ReportData", "collect", "write_report"]


def write_report(catalog: Path, name: str, out_dir: str | Path, *, version: int | None = None,
                 column: str | None = None) -> dict[str, Path]:
    """Write `index.html` and `verb_noun_sunburst.png` under `out_dir`; the catalog is only read."""
    data = collect(Path(catalog), name, version, column)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png_path = sunburst.png(sunburst.layout(data.sunburst), out / "verb_noun_sunburst.png",
                            title=f"{name} v{data.dataset['version']}: top verbs and their direct objects")
    html_path = out / "index.html"
    html_path.write_text(render(data, png_name=png_path.name), encoding="utf-8")
    return {"html": html_path, "png": png_path}
