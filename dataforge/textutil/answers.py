"""Final-answer extraction from rationales (model outputs, GSM8K `answer` fields, MATH solutions).

`extract(text, extractor, pattern=None) -> str | None` is the one entry point; `None` means the text
holds no final answer. Extractors:

- `gsm8k`: the text after the first `#### ` marker (its first number when it has one), else the last number.
  The first marker, as GSM8K's own answer check reads it: a model that writes `#### n` and then rambles on
  into an invented next problem is graded on the answer it gave.
- `boxed`: the contents of the last `\\boxed{...}` or `\\fbox{...}`, braces balanced (nested ones included);
  `\\boxed 5` (no braces) is read up to the next space or `$`.
- `answer_is`: what follows the last "the answer is" (also "final answer is", "answer:"), up to the end of
  the sentence; a `\\boxed{}` inside it is unwrapped; a number followed by a clause ("12, since ...") is
  that number, and any other answer loses the reason it gives ("x = 5, since ..." is `x = 5`);
  ", as well as ..." is part of the answer.
- `last_number`: the last number in the text (`-3`, `1,000`, `2.5`, `3/4`, `$12`).
- `regex`: the last match of a user pattern: its group `answer` if named, else group 1, else the whole match.

The result is the answer as written (trimmed); compare answers with `dataforge.textutil.equivalence`.
"""

from __future__ import annotations

import re
from typing import Callable

EXTRACTORS = ("gsm8k", "boxed", "answer_is", "last_number", "regex")

# A number as people write it: optional sign (not glued to a preceding word or digit), optional `$`,
# thousands separators, decimals, or a simple fraction.
_NUMBER = re.compile(
    r"(?<![\w.])(?:[-+−]\s?)?\$?\s?"
    r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:\s?/\s?\d+(?:\.\d+)?)?|\.\d+)"
    r"(?![\w])"
)
_GSM8K_MARK = re.compile(r"####[ \t]*([^\n]*)")
_BOX_START = re.compile(r"\\(?:boxed|fbox)\b")
_ANSWER_IS = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*[:=]?\s*", re.I)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
# A number followed by the start of a clause ("12, since ...", "12 because ...", "12 (3 boxes of 4)"): the
# number is the answer. A unit or more words ("3.5 hours", "7 apples and 3 pears") are left as written.
_NUMBER_THEN_CLAUSE = re.compile(
    r"((?>" + _NUMBER.pattern + r"))(?:\s*[,;]\s*(?=[^\W\d_])(?!as\s+well\s+as\b)|\s+\(|\s+[\u2013\u2014]\s|"
    r"\s+(?:because|since|as|so|which|that|given|from|when|if|for)\b)", re.I)
# Where any other answer ("x = 5", "5%", "12 dollars", "Paris") gives its reason: the reason is cut off
# (", as well as ..." adds to the answer instead). Without a comma only a lower-case "because"/"since"
# starts one: "Because I Said So" is a title.
_CLAUSE = re.compile(r"\s*[,;]\s*(?i:because|since|as(?!\s+well\s+as\b)|so|which|given|when|if|for|though|but)\b|"
                     r"\s+(?:because|since)\b|\s+[\u2013\u2014]\s")


def numbers(text: str) -> list[str]:
    """Every number in `text`, in order, as written (sign, `$` and separators kept, spaces dropped)."""
    return [re.sub(r"\s", "", m.group(0)).replace("−", "-") for m in _NUMBER.finditer(text)]


def last_number(text: str) -> str | None:
    """The last number in `text`, or None."""
    found = numbers(text)
    return found[-1] if found else None


def gsm8k(text: str) -> str | None:
    """GSM8K's convention: the answer follows the first `#### `; else the last number."""
    mark = _GSM8K_MARK.search(text)
    if mark:
        tail = mark.group(1).strip()
        nums = numbers(tail)
        if nums:
            return nums[0]
        if tail:
            return tail.rstrip(".")
    return last_number(text)


def braced(text: str, start: int) -> tuple[str, int] | None:
    """The contents of the `{...}` group opening at `text[start]` (nesting and `\\{`, `\\}` respected),
    and the index after its closing brace; None when unbalanced."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
        i += 1
    return None


def boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` / `\\fbox{...}` (balanced braces), or None."""
    for m in reversed(list(_BOX_START.finditer(text))):
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            got = braced(text, i)
            if got is not None:
                return got[0].strip()
            continue
        if i > m.end():  # `\boxed 5`: one token
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def answer_is(text: str) -> str | None:
    """What follows the last "the answer is" / "answer:", up to the end of that sentence."""
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    inner = boxed(rest[:200]) if _BOX_START.match(rest) else None
    if inner is not None:
        return inner
    if rest.startswith("$") and not re.match(r"\$\s?\d", rest):  # inline math: `$\frac{1}{2}$`
        close = rest.find("$", 1)
        if close > 0:
            return rest[1:close].strip() or None
    end = _SENTENCE_END.search(rest)
    answer = (rest[:end.start()] if end else rest).strip().rstrip(".,;")
    lead = _NUMBER_THEN_CLAUSE.match(answer)
    if lead:
        return lead.group(1).strip()
    cut = _CLAUSE.search(answer)
    if cut and cut.start() > 0:
        answer = answer[:cut.start()].strip()
    return answer or None


def regex(text: str, pattern: str | re.Pattern[str]) -> str | None:
    """The last match of `pattern`: group `answer` if the pattern names it, else group 1, else the match."""
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    last = None
    for last in rx.finditer(text):
        pass
    if last is None:
        return None
    if "answer" in rx.groupindex:
        got = last.group("answer")
    elif rx.groups:
        got = last.group(1)
    else:
        got = last.group(0)
    return got.strip() if got and got.strip() else None


_SIMPLE: dict[str, Callable[[str], str | None]] = {
    "gsm8k": gsm8k, "boxed": boxed, "answer_is": answer_is, "last_number": last_number}


def extract(text: str | None, extractor: str = "gsm8k", pattern: str | re.Pattern[str] | None = None) -> str | None:
    """The final answer in `text` by `extractor` (one of `EXTRACTORS`), or None when there is none."""
    if text is None:
        return None
    if extractor == "regex":
        if pattern is None:
            raise ValueError("extractor 'regex' needs a pattern")
        return regex(text, pattern)
    try:
        fn = _SIMPLE[extractor]
    except KeyError:
        raise ValueError(f"unknown extractor {extractor!r}; valid: {', '.join(EXTRACTORS)}") from None
    return fn(text)


def check_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a `regex` extractor pattern; raises ValueError naming the problem."""
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"not a valid regex: {e}") from None
    if rx.groups > 1 and "answer" not in rx.groupindex:
        raise ValueError("a pattern with several groups must name the answer's group: (?P<answer>...)")
    return rx
