"""filter.verb_noun: extracted (verb, noun) pairs, diversity caps, the optional benepar backend."""

from __future__ import annotations

import importlib.util
import sys

import polars as pl
import pytest
from nltk import Tree

from dataforge import api
from dataforge.steps.filter import verb_noun as vn
from dataforge.textutil import verbnoun

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
    verbs, nouns = verbnoun.extract_verb_noun([c[0] for c in CASES])
    got = list(zip(verbs, nouns))
    want = [(v, n) for _, v, n in CASES]
    assert len(CASES) == 30
    assert [(c[0], g) for c, g in zip(CASES, got) if g != (c[1], c[2])] == []
    assert got == want


def test_empty_and_null_texts_have_no_pair():
    assert verbnoun.extract_verb_noun(["", None]) == ([None, None], [None, None])


def test_a_text_over_spacys_limit_gets_the_pair_of_its_first_sentence():
    # A 1.5-million-character cell stopped the build: "internal error: ValueError: [E088] Text of length ..."
    huge = "Write a poem about the sea. " + "and then more words " * 75_000
    short = "Write a poem about the sea."
    assert len(huge) > 1_000_000
    assert verbnoun.extract_verb_noun([huge, short]) == (["write", "write"], ["poem", "poem"])


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


BENEPAR_RECIPE = """
    name: vn
    steps:
      - id: src
        type: source.inline
        rows: [{instruction: "Write a poem."}]
      - id: pairs
        type: filter.verb_noun
        backend: benepar
        %s
"""


def test_benepar_model_absent_fails_at_validation_with_the_download_command(write, catalog, cli, monkeypatch):
    if importlib.util.find_spec("benepar") is None:
        pytest.skip("benepar is not installed (pip install 'dataforge[benepar]'; scripts/setup.sh installs it)")
    if verbnoun.benepar_missing() is None:
        pytest.skip("the benepar_en3 model is downloaded here, so its absence cannot be shown")
    res = cli("validate", write("r.yaml", BENEPAR_RECIPE % ""), "--catalog", catalog)
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "r.yaml:" in out and "steps[1].backend" in out and "benepar_en3 is not downloaded" in out
    assert f"{sys.executable} -c \"import benepar; benepar.download('benepar_en3')\"" in out
    assert not catalog.exists()


def test_benepar_package_absent_names_the_pip_command(write, catalog, cli, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(verbnoun.importlib.util, "find_spec", lambda name, *a: None if name == "benepar" else real(name, *a))
    res = cli("validate", write("r.yaml", BENEPAR_RECIPE % ""), "--catalog", catalog)
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "benepar package is not installed" in out and f"{sys.executable} -m pip install benepar &&" in out


def test_benepar_model_directory_that_does_not_exist(write, catalog, cli):
    if importlib.util.find_spec("benepar") is None:
        pytest.skip("benepar is not installed (pip install 'dataforge[benepar]')")
    res = cli("validate", write("r.yaml", BENEPAR_RECIPE % "benepar_model: ./no/such/model"), "--catalog", catalog)
    assert res.exit_code == 2 and "steps[1].benepar_model" in res.output and "does not exist" in res.output


# Hand-built constituency trees (Penn Treebank labels, as benepar_en3 writes them) with the pair
# the walk must find; None where there is no verb, no object, or the object's head is not a noun.
TREES = [
    ("(S (VP (VB Write) (NP (DT a) (JJ short) (NN poem)) (PP (IN about) (NP (DT the) (NN ocean)))) (. .))",
     "Write", "poem"),
    # double object: the second NP is the direct object
    ("(S (VP (VB Give) (NP (PRP me)) (NP (CD three) (NNS tips)) (PP (IN for) (S (VP (VBG staying) (ADJP (JJ focused)))))) (. .))",
     "Give", "tips"),
    ("(S (VP (VB Tell) (NP (PRP me)) (NP (DT a) (NN joke)) (PP (IN about) (NP (NNS programmers)))) (. .))",
     "Tell", "joke"),
    # the head of an NP made of NP + PP is in its first NP
    ("(S (VP (VB Generate) (NP (NP (DT a) (NN list)) (PP (IN of) (NP (NNS names))))) (. .))", "Generate", "list"),
    ("(S (VP (VB Make) (NP (DT a) (NN shopping) (NN list))) (. .))", "Make", "list"),
    # no object: the verb alone
    ("(S (VP (VB Explain) (SBAR (WHADVP (WRB why)) (S (NP (NNS leaves)) (VP (VBP change) (NP (NN color)))))) (. .))",
     "Explain", None),
    # a pronoun or a proper noun is not a NOUN object
    ("(S (VP (VB Rewrite) (NP (PRP it)) (PP (IN in) (NP (DT the) (JJ passive) (NN voice)))) (. .))", "Rewrite", None),
    ("(S (VP (VB Visit) (NP (NNP Paris))) (. .))", "Visit", None),
    # modal + VP: the inner verb
    ("(SQ (MD Can) (NP (PRP you)) (VP (VB recommend) (NP (NP (DT a) (JJ good) (NN book)) (PP (IN on) (NP (NN history))))) (. ?))",
     "recommend", "book"),
    # auxiliary + VP inside a VP
    ("(S (NP (DT The) (NN essay)) (VP (MD should) (VP (VB be) (VP (VBN written) (PP (IN in) (NP (NNP English)))))) (. .))",
     "written", None),
    # coordinated VPs: the first one
    ("(S (VP (VP (VB Write) (NP (DT a) (NN haiku))) (CC and) (VP (VB explain) (NP (PRP it)))) (. .))", "Write", "haiku"),
    ("(S (INTJ (UH Please)) (VP (VB write) (NP (DT a) (NN cover) (NN letter))) (. .))", "write", "letter"),
    # a question without a VP: no verb (the copula is not a VP head here)
    ("(SBARQ (WHNP (WP What)) (SQ (VBZ is) (NP (NP (DT the) (NN capital)) (PP (IN of) (NP (NNP Australia))))) (. ?))",
     None, None),
    # a noun phrase: the highest VP is inside it
    ("(NP (NP (DT A) (JJ short) (NN story)) (PP (IN about) (NP (NP (DT a) (JJ lost) (NN dog)) (VP (VBG finding) "
     "(NP (PRP$ its) (NN way)) (ADVP (RB home))))) (. .))", "finding", "way"),
    # no verb at all
    ("(NP (NP (DT A) (NN list)) (PP (IN of) (NP (NNS fruits))) (. .))", None, None),
    ("(FRAG (NP (NN Poem)))", None, None),
    # the highest VP wins over a deeper, earlier one
    ("(S (SBAR (IN If) (S (NP (PRP you)) (VP (VBP have) (NP (NN time))))) (, ,) (VP (VB summarize) (NP (DT the) (NN text))) (. .))",
     "summarize", "text"),
]


@pytest.mark.parametrize("bracketed,verb,noun", TREES)
def test_constituency_walk_on_hand_built_trees(bracketed, verb, noun):
    tree = Tree.fromstring(bracketed)
    v, n = verbnoun.verb_noun_from_tree(tree)
    leaves = tree.leaves()
    assert (leaves[v] if v is not None else None, leaves[n] if n is not None else None) == (verb, noun)


def test_constituency_walk_on_empty_trees():
    assert verbnoun.verb_noun_from_tree(Tree("S", [])) == (None, None)
    assert verbnoun.verb_noun_from_tree(Tree.fromstring("(S (. .))")) == (None, None)


def test_benepar_backend_lemmatises_the_tree_pair(monkeypatch):
    # The spaCy glue with the parser replaced by hand-written trees: verbs and nouns come back as
    # lemmas of the tokens the walk picked.
    parses = {
        "Give me three tips for staying healthy.":
            "(S (VP (VB Give) (NP (PRP me)) (NP (NP (CD three) (NNS tips)) (PP (IN for) (S (VP (VBG staying) "
            "(ADJP (JJ healthy))))))) (. .))",
        "Can you recommend some books?": "(SQ (MD Can) (NP (PRP you)) (VP (VB recommend) (NP (DT some) (NNS books))) (. ?))",
        "What is the capital of France?":
            "(SBARQ (WHNP (WP What)) (SQ (VBZ is) (NP (NP (DT the) (NN capital)) (PP (IN of) (NP (NNP France))))) (. ?))",
    }
    real_load = verbnoun.load_pipeline.__wrapped__
    monkeypatch.setattr(verbnoun, "load_pipeline", lambda name=None, backend="spacy", model="": real_load(name))
    monkeypatch.setattr(verbnoun, "parse_tree", lambda sent: Tree.fromstring(parses[sent.text]))
    verbs, nouns = verbnoun.extract_verb_noun([*parses, ""], backend="benepar")
    assert list(zip(verbs, nouns)) == [("give", "tip"), ("recommend", "book"), (None, None), (None, None)]


@pytest.mark.skipif(importlib.util.find_spec("benepar") is None or verbnoun.benepar_missing() is not None,
                    reason="needs benepar and its benepar_en3 model (benepar.download needs the internet)")
def test_benepar_backend_end_to_end():
    verbs, nouns = verbnoun.extract_verb_noun([c[0] for c in CASES[:10]], backend="benepar")
    assert list(zip(verbs, nouns)) == [(v, n) for _, v, n in CASES[:10]]


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
