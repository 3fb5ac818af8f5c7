"""The report rendered in a real browser (headless Chromium): every section present and populated, for
three kinds of dataset (instructions with LLM answers, symbol-tuning prompts, graded rationales)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import REPO
from dataforge import api


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")


def render(html: Path, screenshot: Path | None = None) -> str:
    """The DOM Chromium builds from the page (and a screenshot when asked)."""
    exe = _chromium()
    with tempfile.TemporaryDirectory() as profile:
        base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
        try:
            dom = subprocess.run([*base, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=90)
            if screenshot is not None:
                subprocess.run([*base, f"--screenshot={screenshot}", "--window-size=1400,2400", html.as_uri()],
                               capture_output=True, timeout=90)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"Chromium could not run here: {e}")
    if dom.returncode != 0 or "<body" not in dom.stdout:
        pytest.skip(f"Chromium could not render a page here: {dom.stderr.strip()[-300:]}")
    return dom.stdout


class Dom(HTMLParser):
    """Ids of elements, rows per table id, cards per kind, texts of the rendered page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: set[str] = set()
        self.rows: dict[str, int] = {}
        self.kinds: list[str] = []
        self.text: list[str] = []
        self._table: list[str | None] = []
        self.svg_rects = 0
        self._skip = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "table":
            self._table.append(a.get("id"))
        if tag == "tr" and self._table and self._table[-1]:
            self.rows[self._table[-1]] = self.rows.get(self._table[-1], 0) + 1
        if "data-kind" in a:
            self.kinds.append(a["data-kind"])
        if tag == "rect":
            self.svg_rects += 1
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:  # what is shown, not the embedded JSON
            self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


GRADED = [
    {"question": q, "rationale": f"Working {i}: so the answer is {a}.", "answer": a, "gold_answer": g,
     "correct": a == g, "label": "positive" if a == g else "negative",
     "grade_reason": "equal" if a == g else "different_number"}
    for i, (q, a, g) in enumerate([
        ("What is 12 times 4?", "48", "48"), ("What is 12 times 4?", "46", "48"), ("What is 12 times 4?", "48", "48"),
        ("How many legs do 3 spiders have?", "24", "24"), ("How many legs do 3 spiders have?", "18", "24"),
        ("A train leaves at 9 and takes 150 minutes. When does it arrive?", "10", "11.5"),
        ("A train leaves at 9 and takes 150 minutes. When does it arrive?", "12", "11.5"),
        ("What is 7 squared?", "49", "49"), ("What is 7 squared?", "49", "49"),
    ])]


def _sections(dom: Dom) -> None:
    for sid in ("build", "rejections", "columns", "sample", "rows", "verb-noun", "build-table", "sample-table",
                "rows-table"):
        assert sid in dom.ids, f"section #{sid} missing"
    assert dom.rows["build-table"] >= 2 and dom.rows["sample-table"] >= 2 and dom.rows["rows-table"] >= 2
    assert dom.kinds and "id" in dom.kinds  # column profiles, ids skipped (shown as such)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = REPO / ".report-screenshots"
    d.mkdir(exist_ok=True)
    return d


@pytest.mark.xdist_group("quickstart")
def test_quickstart_report_in_chromium(tmp_path, quickstart, shots):
    _chromium()
    catalog, _ = quickstart
    html = api.report("model_answers", out=tmp_path / "rep", catalog=catalog)["html"]
    dom = Dom(render(html, shots / "quickstart.png"))
    _sections(dom)
    assert "panel-llm" in dom.ids and dom.rows["llm-table"] == 2  # header + the one LLM step
    assert "sunburst" in dom.ids and dom.svg_rects > 10  # verb-noun figure and histograms drawn
    text = dom.all_text
    assert "rouge_l" in text and "nearest kept row" in text  # a near-duplicate beside the row it resembles
    assert "Source: dataset columns verb/noun" in text  # filter.verb_noun's own tags, not re-parsed
    steps = json.loads(re.search(r'id="report-data">(.*?)</script>', html.read_text(), re.S).group(1))["steps"]
    assert [s["step_id"] for s in steps] == ["seeds", "clean", "unique", "tagged", "answers"]
    assert all(s["rows_in"] == s["rows_out"] + s["rejected"] for s in steps if s["type"].startswith("filter."))


def test_symbol_tuning_report_in_chromium(tmp_path, catalog, shots):
    _chromium()
    api.build(REPO / "recipes" / "symbol_tuning.yaml", catalog=catalog)
    html = api.report("symbol_tuning_train", out=tmp_path / "rep", catalog=catalog)["html"]
    dom = Dom(render(html, shots / "symbol_tuning.png"))
    _sections(dom)
    assert "panel-symbols" in dom.ids
    text = dom.all_text
    assert "exemplars per class (k)" in text and "symbol pools drawn" in text and "formats drawn" in text
    assert "Text: {input} / Answer:" in text or "Q: {input} / A:" in text
    assert "verb-noun-note" in dom.ids and "no instruction-like column" in text  # no parsing of prompts
    # the build table shows only the dataset's ancestors: none of the evaluation sets' steps
    assert "eval_flipped" not in text and "train_prompts" in text


def test_graded_rationales_report_in_chromium(write, tmp_path, catalog, shots):
    _chromium()
    r = write("graded.yaml", json.dumps({
        "name": "graded", "seed": 1,
        "steps": [{"id": "graded", "type": "source.inline", "rows": GRADED},
                  {"id": "kept", "type": "transform.sql", "from": "graded", "rejections": True,
                   "query": "select * from graded where question not like 'A train%' or correct"}],
        "outputs": {"graded_rationales": "kept", "all_graded": "graded"}}))
    api.build(r, catalog=catalog)
    html = api.report("all_graded", out=tmp_path / "rep", catalog=catalog)["html"]
    dom = Dom(render(html, shots / "graded.png"))
    _sections(dom)
    assert "panel-graded" in dom.ids
    text = dom.all_text
    assert "4 questions" in text and "1 with no correct rationale" in text
    assert "A train leaves at 9" in text  # the all-wrong question is listed
    assert "kept" not in [s for s in re.findall(r"<td>(\w+)</td>", html.read_text())]  # not an ancestor

    html2 = api.report("graded_rationales", out=tmp_path / "rep2", catalog=catalog)["html"]
    dom2 = Dom(render(html2))
    assert "not returned by the query" in dom2.all_text and dom2.rows["build-table"] == 3
