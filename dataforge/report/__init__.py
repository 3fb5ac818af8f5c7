"""`dataforge report`: an offline HTML page (and a sunburst PNG) describing one catalog dataset."""

from __future__ import annotations

import json
from pathlib import Path

from dataforge import __version__
from dataforge.outdir import check_replaceable, out_path, staged_dir
from dataforge.report import sunburst
from dataforge.report.data import ReportData, collect
from dataforge.report.html import render

__all__ = ["MARKER", "ReportData", "collect", "write_report"]

MARKER = "report.json"
"""What a report leaves in its folder (dataset, version): a later report may replace that folder."""


def write_report(catalog: Path, name: str, out_dir: str | Path, *, version: int | None = None,
                 column: str | None = None) -> dict[str, Path]:
    """Write `index.html` and `verb_noun_sunburst.png` under `out_dir`; the catalog is only read.

    `out_dir` must be new, empty or an earlier report (it is replaced whole, like an export).
    """
    out = out_path(out_dir, "report")
    check_replaceable(out, MARKER, "report")  # before the work, not after it
    data = collect(Path(catalog), name, version, column)
    with staged_dir(out, MARKER, "report") as tmp:
        png = sunburst.png(sunburst.layout(data.sunburst), tmp / "verb_noun_sunburst.png",
                           title=f"{name} v{data.dataset['version']}: top verbs and their direct objects")
        (tmp / "index.html").write_text(render(data, png_name=png.name), encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps({"dataset": name, "version": data.dataset["version"],
                                              "dataforge_version": __version__}, indent=1) + "\n",
                                  encoding="utf-8")
    return {"html": out / "index.html", "png": out / png.name}
