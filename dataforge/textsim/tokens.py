"""rouge_score's tokenization, with every token mapped to one character for bit-parallel LCS.

Tokens are made as `rouge_score.tokenize.tokenize` makes them, with its own regexes and nltk's
Porter stemmer (lowercase, non-`[a-z0-9]` runs become spaces, optional stemming of tokens longer
than 3 characters), so they match `RougeScorer(["rougeL"], use_stemmer=...)` exactly. Each distinct token then gets one code
point, which turns a token sequence into a short `str` that rapidfuzz compares with its
bit-parallel LCS: the LCS of the strings is the LCS of the token sequences.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Iterable

from rouge_score import tokenize as rouge_tokenize

# Code points 0xD800-0xDFFF are surrogates; skip them so every code is a plain character.
_SURROGATES = 0xD800
_SURROGATE_SPAN = 0x800
MAX_VOCAB = 0x110000 - _SURROGATE_SPAN


class _CachedStemmer:
    """rouge_score's Porter stemmer with a memo: each distinct word is stemmed once."""

    def __init__(self) -> None:
        from nltk.stem import porter  # nltk's import pulls scipy and sklearn: only when stemming

        self.stem = lru_cache(maxsize=1 << 20)(porter.PorterStemmer().stem)


_STEMMER: _CachedStemmer | None = None


def _stemmer() -> _CachedStemmer:
    global _STEMMER
    if _STEMMER is None:
        _STEMMER = _CachedStemmer()
    return _STEMMER


def _code(i: int) -> str:
    return chr(i if i < _SURROGATES else i + _SURROGATE_SPAN)


class RougeTokens:
    """Tokenizer + vocabulary shared by every text compared in one scoring run.

    `encode(text)` returns the text's tokens as a string of one character per token;
    texts encoded by the same instance can be compared with any LCS on strings.
    """

    def __init__(self, use_stemmer: bool = False) -> None:
        self.use_stemmer = use_stemmer
        self._stemmer = _stemmer() if use_stemmer else None
        self._vocab: dict[str, str] = {}

    def tokenize(self, text: str | None) -> list[str]:
        """Tokens exactly as rouge_score's default tokenizer makes them (None reads as "")."""
        # rouge_score.tokenize.tokenize step by step, with its regexes. After the substitution only
        # [a-z0-9] and spaces are left, so str.split() equals its whitespace split minus empty
        # strings, and without a stemmer its final validity filter keeps every token.
        tokens = rouge_tokenize.NON_ALPHANUM_RE.sub(" ", (text or "").lower()).split()
        if self._stemmer is None:
            return tokens
        stem = self._stemmer.stem
        tokens = [stem(x) if len(x) > 3 else x for x in tokens]
        return [x for x in tokens if rouge_tokenize.VALID_TOKEN_RE.match(x)]

    def encode(self, text: str | None) -> str:
        """The text's tokens, one character each."""
        return self.encode_all([text])[0]

    def encode_all(self, texts: Iterable[str | None]) -> list[str]:
        """`encode` over many texts.

        Tokens new to the vocabulary get codes in order of their frequency in `texts`: frequent
        tokens get code points below 256, which rapidfuzz looks up in a flat table, not a hash map.
        """
        token_lists = [self.tokenize(t) for t in texts]
        vocab = self._vocab
        fresh = Counter(tok for toks in token_lists for tok in toks if tok not in vocab)
        if len(vocab) + len(fresh) > MAX_VOCAB:
            raise ValueError(f"more than {MAX_VOCAB:,} distinct tokens in one scoring run")
        for tok, _ in fresh.most_common():  # ties keep first-seen order
            vocab[tok] = _code(len(vocab))
        return ["".join([vocab[tok] for tok in toks]) for toks in token_lists]
