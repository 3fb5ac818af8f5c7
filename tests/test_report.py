"""`dataforge report`: an offline HTML page with the figure data, a valid sunburst PNG, catalog untouched."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from dataforge import api

INSTRUCTIONS = [
    "Write a poem about the sea.", "Write a poem about autumn leaves.", "Write a story about a brave mouse.",
    "Write a letter to your future self.", "Give me a recipe for pancakes.", "Give me an example of irony.",
    "Summarize the article in two sentences.", "Summarize the paragraph below briefly.",
    "Translate the sentence into German.", "Describe the process of making cheese.",
    "Explain why the sky is blue.", "What is the tallest mountain on Earth?",
    "Draw a picture of a horse.",  # blacklisted: shows up as a rejection reason
    "Hi",  # too short
]


class _Page(HTMLParser):
    """Collects the embedded JSON, resource references and SVG shapes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.json_text = ""
        self._in_json = False
        self.resources: list[str] = []
        self.paths: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("id") == "report-data":
            self._in_json = True
        for key in ("src", "href"):
            if a.get(key):
                self.resources.append(a[key])
        if tag == "path":
            self.paths.append(a)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_json = False

    def handle_data(self, data):
        if self._in_json:
            self.json_text += data


def _recipe(write):
    rows = "\n".join(f"          - {{instruction: {json.dumps(t)}}}" for t in INSTRUCTIONS)
    return write("r.yaml", f"""
name: report-demo
steps:
  - id: src
    type: source.inline
    rows:
{rows.replace('          - ', '      - ')}
  - id: clean
    type: filter.heuristics
  - id: pairs
    type: filter.verb_noun
outputs:
  with_pairs: pairs
  plain: clean
""")


def _open(html: Path) -> tuple[str, _Page, dict]:
    text = html.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page, json.loads(page.json_text)


def test_report_renders_offline_with_figure_data(write, catalog, tmp_path):
    api.build(_recipe(write), catalog=catalog)
    before = hashlib.sha256(catalog.read_bytes()).hexdigest()
    paths = api.report("with_pairs", out=tmp_path / "rep", catalog=catalog)
    assert hashlib.sha256(catalog.read_bytes()).hexdigest() == before  # the report only reads

    text, page, data = _open(paths["html"])
    assert not re.search(r"https?://", text)  # no CDN, no web fonts, nothing fetched
    assert [r for r in page.resources if not r.startswith("#")] == ["verb_noun_sunburst.png"]  # the only link: the PNG beside the page

    assert data["dataset"]["rows"] == 12 and data["dataset"]["name"] == "with_pairs"
    steps = {s["step_id"]: s for s in data["steps"]}
    assert (steps["src"]["rows_out"], steps["clean"]["rows_out"], steps["pairs"]["rows_out"]) == (14, 12, 12)
    assert steps["src"]["rows_in"] == 14  # a source's rows in: the rows it read
    assert "<tr><td>src</td><td>source.inline</td><td>built</td><td class=num>14</td>" in text
    assert {(r["step_id"], r["reason"], r["rows"]) for r in data["rejections"]} == {
        ("clean", "too_short", 1), ("clean", "blacklist:draw", 1)}

    sun = data["sunburst"]
    verbs = {v["verb"]: {n["noun"]: n["rows"] for n in v["nouns"]} for v in sun["verbs"]}
    assert verbs["write"] == {"poem": 2, "letter": 1, "story": 1}
    assert verbs["give"] == {"example": 1, "recipe": 1}
    assert sun["verbs"][0]["verb"] == "write"  # most rows first
    assert "explain" not in verbs  # a verb without an object is not part of the figure
    assert sun["with_pair"] == 10 and sun["rows"] == 12

    # The inline SVG draws one arc per verb and per noun, labelled with its count.
    arcs = {(p["data-ring"], p["data-label"]): int(p["data-rows"]) for p in page.paths if "data-ring" in p}
    assert arcs[("0", "write")] == 4 and arcs[("1", "write poem")] == 2
    prof = {p["column"]: p for p in data["profiles"]}
    hist = prof["instruction"]["hist"]
    assert prof["instruction"]["kind"] == "text" and prof["id"]["kind"] == "id" and "hist" not in prof["id"]
    assert sum(hist["counts"]) + hist["tail"] == 12 and hist["quantiles"]["min"] == 5

    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_report_parses_verbs_when_the_dataset_has_none(write, catalog, tmp_path, cli):
    api.build(_recipe(write), catalog=catalog)
    res = cli("report", "plain", "--out", tmp_path / "rep", "--catalog", catalog)
    assert res.exit_code == 0, res.output
    _, _, data = _open(tmp_path / "rep" / "index.html")
    assert "verb" not in data["columns"]
    assert "parsed from column 'instruction'" in data["sunburst"]["source"]
    assert {v["verb"] for v in data["sunburst"]["verbs"]} >= {"write", "give", "summarize"}


def test_a_large_dataset_has_its_verbs_parsed_from_a_seeded_sample(write, catalog, tmp_path, cli, monkeypatch):
    # Parsing every row of a million-row dataset kept `report` busy for an hour.
    import dataforge.report.data as report_data
    import dataforge.textutil.verbnoun as verbnoun

    api.build(_recipe(write), catalog=catalog)
    parsed: list[int] = []
    real = verbnoun.extract_verb_noun
    monkeypatch.setattr(verbnoun, "extract_verb_noun", lambda texts: (parsed.append(len(texts)), real(texts))[1])
    monkeypatch.setattr(report_data, "VERB_NOUN_ROWS", 5)
    res = cli("report", "plain", "--out", tmp_path / "rep", "--catalog", catalog)
    assert res.exit_code == 0, res.output
    _, _, data = _open(tmp_path / "rep" / "index.html")
    rows = api.dataset_info("plain", catalog=catalog)["rows"]
    assert parsed == [5] and rows > 5
    assert f"(named like an instruction), a seeded sample of 5 of its {rows} rows" in data["sunburst"]["source"]
    assert data["sunburst"]["rows"] == 5


def test_unknown_dataset_is_a_user_error(catalog, tmp_path, cli, write):
    api.build(_recipe(write), catalog=catalog)
    res = cli("report", "nope", "--out", tmp_path / "rep", "--catalog", catalog)
    assert res.exit_code == 2 and "no dataset 'nope'" in res.output


def test_rebuilt_dataset_still_shows_reasons_of_reused_steps(write, catalog, tmp_path):
    recipe = _recipe(write)
    api.build(recipe, catalog=catalog)
    # src and clean are reused (their rejections were written by the first build); pairs is rebuilt
    write("r.yaml", recipe.read_text().replace("type: filter.verb_noun", "type: filter.verb_noun\n    max_per_pair: 50"))
    api.build(recipe, catalog=catalog)
    _, _, data = _open(api.report("with_pairs", out=tmp_path / "rep", catalog=catalog)["html"])
    assert data["dataset"]["version"] == 2
    assert {s["step_id"]: s["status"] for s in data["steps"]} == {"src": "reused", "clean": "reused",
                                                                   "pairs": "built"}
    assert {r["reason"] for r in data["rejections"]} == {"too_short", "blacklist:draw"}


def test_an_emoji_in_the_sunburst_draws_without_a_font_warning(tmp_path):
    # matplotlib's default font has no emoji; its UserWarning reached the user's shell on every report.
    import warnings

    from dataforge.report import sunburst
    from dataforge.report.data import sunburst_data

    segments = sunburst.layout(sunburst_data(["write", "draw"], ["poem", "🙂"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = sunburst.png(segments, tmp_path / "s.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_graded_panel_lists_questions_never_answered_right_in_order_and_counts_the_rest(write, catalog,
                                                                                             tmp_path):
    # It listed 5 of 6 such questions, picked in no fixed order, and said nothing of the sixth.
    rows = [{"question": f"Q{i:02d} how many?", "rationale": "so 3", "label": "4", "correct": False,
             "grade_reason": "wrong"} for i in range(25)]
    rows += [{"question": "Q99 solved", "rationale": "so 4", "label": "4", "correct": True, "grade_reason": "match"}]
    r = write("g.yaml", json.dumps({"name": "g", "steps": [{"id": "g", "type": "source.inline", "rows": rows}],
                                    "outputs": {"graded": "g"}}))
    api.build(r, catalog=catalog, quiet=True)
    text, _, data = _open(api.report("graded", out=tmp_path / "rep", catalog=catalog)["html"])
    listed = data["panels"]["graded"]["all_wrong_examples"]
    assert listed == [f"Q{i:02d} how many?" for i in range(20)]
    assert "25 with no correct rationale" in text and "and 5 more</li>" in text


def test_the_report_shows_control_characters_as_escapes_and_cuts_huge_cells(write, catalog, tmp_path):
    # The page held raw ESC, BEL and U+202E (a browser showed "gnp.exe" as "exe.png"), and a 2 MB cell
    # in full, twice.
    rows = [{"text": "\x1b[2J\x1b]0;pwned\x07 hi \u202egnp.exe"}, {"text": "big " + "y" * 2_000_000},
            {"text": "zero\u200bwidth"}]
    r = write("c.yaml", json.dumps({"name": "c", "steps": [{"id": "s", "type": "source.inline", "rows": rows}],
                                    "outputs": {"odd": "s"}}))
    api.build(r, catalog=catalog, quiet=True)
    html = api.report("odd", out=tmp_path / "rep", catalog=catalog)["html"]
    text, _, data = _open(html)
    assert not any(ch in text for ch in "\x1b\x07\u202e\u200b")
    assert "\\x1b[2J\\x1b]0;pwned\\x07 hi \\u202egnp.exe" in text and "zero\\u200bwidth" in text
    assert html.stat().st_size < 200_000
    assert max(len(r["text"]) for r in data["sample"]) == 2_001  # 2,000 characters and the ellipsis


def test_a_query_sentence_that_looks_like_a_label_is_not_read_as_the_prompts_format():
    # An SST-2 sentence "the verdict : ..." was counted as a format `the verdict : {input} / ->`.
    from dataforge.report.panels import _format_of

    assert _format_of("a fine film\n-> foo\n\ndull and long\n-> bar\n\nthe verdict : a mess\n->") == "{input} / ->"
    assert _format_of("Text: a fine film\nAnswer: foo\n\nText: the verdict : a mess\nAnswer:") == \
        "Text: {input} / Answer:"
