"""filter.verb_noun: extracted (verb, noun) pairs, diversity caps, the optional benepar backend."""

from __future__ import annotations

import polars as pl
import pytest

from dataforge import api
from dataforge.steps.filter import verb_noun as vn

# 30 instructions written for this test, with the pair a careful reader would pick.
CASES = [
    ("Write a short poem about the ocean at night.", "write", "poem"),
    ("Give me three tips for staying focused while studying.", "give", "tip"),
    ("Summarize the following paragraph in one sentence.", "summarize", "paragraph"),
    ("Translate the sentence below into Spanish.", "translate", "sentence"),
    ("Generate a list of names for a new coffee shop.", "generate", "list"),
    ("Create a workout plan for a beginner who has ten minutes a day.", "create", "plan"),
    ("Classify the sentiment of this movie review as positive or negative.", "classify", "sentiment"),
    ("Suggest a title for a blog post about remote work.", "suggest", "title"),
    ("Find the largest number in the list.", "find", "number"),
    ("Compose an email to a colleague asking for feedback.", "compose", "email"),
    ("Rewrite the sentence so that it uses the passive voice.", "rewrite", "sentence"),
    ("Describe the process of photosynthesis in simple terms.", "describe", "process"),
    ("Identify the main argument of the essay.", "identify", "argument"),
    ("Design a logo for a bakery.", "design", "logo"),
    ("Provide an example of a renewable energy source.", "provide", "example"),
    ("Calculate the area of a circle with a radius of four centimeters.", "calculate", "area"),
    ("Make a shopping list for a vegetarian dinner party.", "make", "list"),
    ("Tell me a joke about programmers.", "tell", "joke"),
    ("Name five countries that border Germany.", "name", "country"),
    ("Answer the following question about the solar system.", "answer", "question"),
    ("Edit this paragraph to fix the grammar mistakes.", "edit", "paragraph"),
    ("Please write a cover letter for a teaching position.", "write", "letter"),
    ("Detect the language of the given text.", "detect", "language"),
    ("Sort these numbers in ascending order: 5, 2, 9.", "sort", "number"),
    ("Can you recommend a good book on history?", "recommend", "book"),
    # Only the first sentence counts.
    ("Write a haiku. Then explain the imagery you used.", "write", "haiku"),
    # Root verb without a direct object: the verb alone.
    ("Explain why leaves change color in the autumn.", "explain", None),
    ("How do airplanes stay in the air?", "stay", None),
    # Root is not a verb: fall back to the first verb that has a noun object, else nothing.
    ("A short story about a lost dog finding its way home.", "find", "way"),
    ("What is the capital city of Australia?", None, None),
]


def test_thirty_hand_written_instructions():
    verbs, nouns = vn.extract_verb_noun([c[0] for c in CASES])
    got = list(zip(verbs, nouns))
    want = [(v, n) for _, v, n in CASES]
    assert len(CASES) == 30
    assert [(c[0], g) for c, g in zip(CASES, got) if g != (c[1], c[2])] == []
    assert got == want


def test_empty_and_null_texts_have_no_pair():
    assert vn.extract_verb_noun(["", None]) == ([None, None], [None, None])


def _frame(pairs: list[tuple[str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"r{i}" for i in range(len(pairs))], "verb": [p[0] for p in pairs],
                         "noun": [p[1] for p in pairs]}, schema={"id": pl.Utf8, "verb": pl.Utf8, "noun": pl.Utf8})


def test_caps_keep_the_first_rows_of_each_pair():
    df = _frame([("write", "poem")] * 5 + [("tell", "joke")] * 2 + [("explain", None)] * 4)
    capped = vn.pair_caps(df, max_share=None, max_per_pair=2)
    assert capped.to_list() == [False, False, True, True, True] + [False] * 6
    # max_share 0.2 of 11 rows -> 2 per pair; the smaller of both caps wins
    assert vn.pair_caps(df, max_share=0.2, max_per_pair=3).to_list() == capped.to_list()
    assert vn.pair_caps(df, max_share=None, max_per_pair=None).sum() == 0


def test_random_keep_is_seeded():
    df = _frame([("write", "poem")] * 20)
    a = vn.pair_caps(df, max_share=None, max_per_pair=5, keep="random", seed=1)
    b = vn.pair_caps(df, max_share=None, max_per_pair=5, keep="random", seed=1)
    c = vn.pair_caps(df, max_share=None, max_per_pair=5, keep="random", seed=2)
    assert a.to_list() == b.to_list() and a.sum() == 15
    assert a.to_list() != c.to_list()


def test_step_in_a_recipe_adds_columns_and_records_caps(write, catalog):
    recipe = write("r.yaml", """
        name: vn
        steps:
          - id: src
            type: source.inline
            rows:
              - {instruction: "Write a poem about spring."}
              - {instruction: "Write a poem about the sea."}
              - {instruction: "Write a poem about rain."}
              - {instruction: "Tell me a joke about cats."}
              - {instruction: "What is the boiling point of water?"}
          - id: pairs
            type: filter.verb_noun
            max_per_pair: 2
        outputs:
          pairs: pairs
    """)
    api.build(recipe, catalog=catalog)
    out = api.read("pairs", catalog=catalog)
    assert out.select("instruction", "verb", "noun").rows() == [
        ("Write a poem about spring.", "write", "poem"),
        ("Write a poem about the sea.", "write", "poem"),
        ("Tell me a joke about cats.", "tell", "joke"),
        ("What is the boiling point of water?", None, None),
    ]
    rej = api.sql("select reason, score, detail from rejections", catalog=catalog).to_dicts()
    assert rej == [{"reason": "verb_noun_cap", "score": pytest.approx(0.6), "detail": "write poem"}]


def test_drop_unparsed():
    df = pl.DataFrame({"id": ["a", "b"], "instruction": ["Write a poem about rain.", "Why is the sky blue?"]})
    res = vn.VerbNounFilter(id="v", type="filter.verb_noun", drop_unparsed=True).run([df], None)  # type: ignore[arg-type]
    assert res.df["id"].to_list() == ["a"]
    assert res.rejections.select("row_id", "reason").rows() == [("b", "no_verb_noun")]


def test_benepar_backend_fails_at_validation_with_the_install_command(write, catalog, cli, monkeypatch):
    monkeypatch.setattr(vn, "benepar_missing", lambda: "the benepar package is not installed")
    recipe = write("r.yaml", """
        name: vn
        steps:
          - id: src
            type: source.inline
            rows: [{instruction: "Write a poem."}]
          - id: pairs
            type: filter.verb_noun
            backend: benepar
    """)
    res = cli("validate", recipe, "--catalog", catalog)
    assert res.exit_code == 2
    assert "steps[1].backend" in res.output
    assert vn.BENEPAR_INSTALL in res.output.replace("\n", "")
    assert not catalog.exists()


def test_unknown_pipeline_fails_at_validation(write, catalog, cli):
    recipe = write("r.yaml", """
        name: vn
        steps:
          - id: src
            type: source.inline
            rows: [{instruction: "Write a poem."}]
          - id: pairs
            type: filter.verb_noun
            pipeline: xx_no_such_pipeline
    """)
    res = cli("validate", recipe, "--catalog", catalog)
    assert res.exit_code == 2 and "steps[1].pipeline" in res.output and "xx_no_such_pipeline" in res.output


def test_empty_input_with_caps():
    df = pl.DataFrame({"id": [], "instruction": []}, schema={"id": pl.Utf8, "instruction": pl.Utf8})
    res = vn.VerbNounFilter(id="v", type="filter.verb_noun", max_share=0.1,
                            drop_unparsed=True).run([df], None)  # type: ignore[arg-type]
    assert res.df.columns == ["id", "instruction", "verb", "noun"] and res.df.height == 0
    assert res.rejections.height == 0
