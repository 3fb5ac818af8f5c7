"""filter.heuristics: Self-Instruct's rules, dedup, per-column lengths, regexes, unicode."""

from __future__ import annotations

import polars as pl
import pytest

from dataforge import api
from dataforge.steps.filter.heuristics import HeuristicsFilter
from dataforge.textutil.words import word_count


def _run(rows: list[dict], **params) -> tuple[list[str], dict[str, str]]:
    """Kept instructions and {dropped instruction: reason}."""
    df = pl.DataFrame(rows).with_row_index("id").with_columns(pl.col("id").cast(pl.Utf8))
    step = HeuristicsFilter(id="h", type="filter.heuristics", **params)
    res = step.run([df], None)  # type: ignore[arg-type]
    by_id = dict(zip(df["id"], df["instruction"]))
    dropped = {by_id[r]: reason for r, reason in zip(res.rejections["row_id"], res.rejections["reason"])}
    return res.df["instruction"].to_list(), dropped


def test_self_instruct_defaults_name_the_rule():
    kept, dropped = _run([{"instruction": t} for t in [
        "Summarize the following news article in two sentences.",
        "Hi there",
        "Describe the image below in detail.",
        "Please go  to the store and buy milk for the party.",
        "Write a program that sorts a list of numbers.",
        "write a Program to reverse a string in Python.",
        '"Quoted" instructions should not survive the filter.',
        "¿Cuál es la capital de Francia y por qué?",
        "Explain why the sky is blue during the day.",
        " ".join(["word"] * 151),
        "Plotting the results is not requested here, explain them.",
    ]])
    assert kept == ["Summarize the following news article in two sentences.",
                    "Explain why the sky is blue during the day.",
                    "Plotting the results is not requested here, explain them."]
    assert dropped["Hi there"] == "too_short"
    assert dropped["Describe the image below in detail."] == "blacklist:image"
    assert dropped["Please go  to the store and buy milk for the party."] == "blacklist:go to"
    assert dropped["Write a program that sorts a list of numbers."] == "forbidden_prefix"
    assert dropped["write a Program to reverse a string in Python."] == "forbidden_prefix"
    assert dropped['"Quoted" instructions should not survive the filter.'] == "leading_punctuation"
    assert dropped["¿Cuál es la capital de Francia y por qué?"] == "leading_punctuation"
    assert dropped[" ".join(["word"] * 151)] == "too_long"


def test_the_word_bounds_and_blacklist_are_the_papers():
    # Self-Instruct drops an instruction of 3 words or fewer, or over 150, and blacklists 13 words;
    # Alpaca's extra words (video, music, ...) are not the paper's.
    kept, dropped = _run([{"instruction": t} for t in [
        "Complete the lyrics.",
        "Complete these song lyrics.",
        " ".join(["word"] * 150),
        "Recommend a video about cooking pasta.",
        "Compose music for a short poem.",
    ]])
    assert dropped == {"Complete the lyrics.": "too_short"}
    assert kept[0] == "Complete these song lyrics." and len(kept) == 4
    _, dropped = _run([{"instruction": "Recommend a video about cooking pasta."}],
                      blacklist=["video", "audio", "music", "flowchart", "diagram"])
    assert dropped == {"Recommend a video about cooking pasta.": "blacklist:video"}


def test_rules_are_configurable():
    rows = [{"instruction": t} for t in ["Ça va bien, merci beaucoup.", "Draw a cat", "Show the map"]]
    kept, dropped = _run(rows, drop_non_ascii_start=False, blacklist=["map"], min_words=2)
    assert kept == ["Ça va bien, merci beaucoup.", "Draw a cat"]
    assert dropped == {"Show the map": "blacklist:map"}
    kept, dropped = _run(rows)
    assert dropped["Ça va bien, merci beaucoup."] == "non_ascii_start"


def test_dedup_exact_and_normalized():
    rows = [{"instruction": t} for t in [
        "Name three primary colors please.",
        "Name  three primary colors\tplease. ",
        "Ｎａｍｅ three primary colors please.",   # full-width letters: same after NFKC
        "name three primary colors please.",
        "Name three primary colors please.",
    ]]
    kept, dropped = _run(rows, dedup="exact")
    assert len(kept) == 4 and list(dropped.values()) == ["duplicate"]
    kept, dropped = _run(rows)
    assert kept == ["Name three primary colors please.", "name three primary colors please."]
    kept, _ = _run(rows, dedup_ignore_case=True)
    assert kept == ["Name three primary colors please."]
    kept, _ = _run(rows, dedup="none")
    assert len(kept) == 5


def test_duplicate_detail_names_the_kept_row():
    df = pl.DataFrame({"id": ["a", "b", "c"], "instruction": ["Tell me a joke now.", "Hi", "Tell me a joke now."]})
    res = HeuristicsFilter(id="h", type="filter.heuristics").run([df], None)  # type: ignore[arg-type]
    rej = res.rejections.sort("row_id").to_dicts()
    assert [(r["row_id"], r["reason"], r["detail"]) for r in rej] == [("b", "too_short", None), ("c", "duplicate", "a")]
    assert rej[0]["score"] == 1.0  # the word count


def test_per_column_lengths_and_regexes():
    rows = [
        {"instruction": "Translate this sentence into German.", "output": ""},
        {"instruction": "Translate this sentence into French.", "output": "x" * 50},
        {"instruction": "Give the answer as a number only.", "output": "42"},
        {"instruction": "As an AI language model, explain it.", "output": "Sure"},
        {"instruction": "List some good books to read.", "output": "TODO"},
    ]
    kept, dropped = _run(rows, min_chars={"output": 1}, max_chars={"output": 20},
                         drop_regex={"instruction": r"(?i)as an ai"}, keep_regex={"output": r"\w"},
                         dedup="none")
    assert kept == ["Give the answer as a number only.", "List some good books to read."]
    assert dropped == {"Translate this sentence into German.": "min_length:output",
                       "Translate this sentence into French.": "max_length:output",
                       "As an AI language model, explain it.": "regex_drop:instruction"}
    _, dropped = _run(rows, keep_regex={"output": r"^\d+$"}, dedup="none")
    assert dropped["List some good books to read."] == "regex_keep:output"


def test_words_are_counted_in_unspaced_scripts():
    counts = pl.DataFrame({"t": ["请把这句话翻译成英文", "three plain words", "日本語 text"]}).select(
        word_count(pl.col("t")))["t"].to_list()
    assert counts == [10, 3, 4]
    kept, dropped = _run([{"instruction": "翻译"}, {"instruction": "请把这句话翻译成英文"}], drop_non_ascii_start=False)
    assert kept == ["请把这句话翻译成英文"] and dropped == {"翻译": "too_short"}


def test_in_a_recipe_rejections_reach_the_catalog(write, catalog):
    recipe = write("r.yaml", """
        name: h
        steps:
          - id: src
            type: source.inline
            rows:
              - {instruction: "Describe the picture in five words."}
              - {instruction: "Explain gravity to a ten year old."}
          - id: clean
            type: filter.heuristics
        outputs:
          clean: clean
    """)
    api.build(recipe, catalog=catalog)
    assert api.read("clean", catalog=catalog)["instruction"].to_list() == ["Explain gravity to a ten year old."]
    rej = api.sql("select step_id, reason, detail from rejections", catalog=catalog)
    assert rej.to_dicts() == [{"step_id": "clean", "reason": "blacklist:picture", "detail": "picture"}]


def test_bad_regex_is_a_located_error(write, catalog, cli):
    recipe = write("r.yaml", """
        name: h
        steps:
          - id: src
            type: source.inline
            rows: [{instruction: "Explain gravity to a child."}]
          - id: clean
            type: filter.heuristics
            drop_regex: {instruction: "(?=lookahead)"}
    """)
    res = cli("validate", recipe, "--catalog", catalog)
    assert res.exit_code == 2
    assert "r.yaml:8:" in res.output and "not a valid regex" in res.output


@pytest.mark.parametrize("kind", ["filter.heuristics", "filter.rouge_l"])
def test_a_list_column_is_a_located_error_not_an_internal_one(write, catalog, cli, kind):
    recipe = write("r.yaml", f"""
        name: h
        steps:
          - id: src
            type: source.inline
            rows: [{{instruction: [Explain gravity, to a child]}}, {{instruction: [Name a color]}}]
          - id: clean
            type: {kind}
    """)
    res = cli("build", recipe, "--catalog", catalog)
    assert res.exit_code == 2, res.output
    assert "r.yaml:6:" in res.output and "steps[1].column: column 'instruction' holds List(String)" in res.output
