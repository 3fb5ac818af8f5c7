"""Self-Instruct's text handling, free of I/O: prompt items, splitting a list continuation, the yes/no
answer, parsing generated instances (input-first and output-first) and the instance filters.

The mechanics follow the Self-Instruct reference pipeline; every rule reports a reason name so
dropped text can be recorded in `rejections`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_WS = re.compile(r"\s+")
# An item number at the start of a line: "10. ", "10 . " (the model continues "9." with " text\n10. ...").
_ITEM = re.compile(r"(?:^|\n)[ \t]*(\d+)\s?\.[ \t]")  # split() gives [before, number, item, number, item, ...]
_EXAMPLE = re.compile(r"Example\s?\d*\.?")
_OUTPUT = re.compile(r"Output\s*\d*\s*:")
_INPUT = re.compile(r"Input\s*\d*\s*:")
_LEADING_INPUT = re.compile(r"^Input\s*\d*\s*:")
CLASS_LABEL = "Class label:"


def prompt_item(text: str) -> str:
    """An instruction as a prompt line: whitespace collapsed, stripped, a trailing ':' removed."""
    return _WS.sub(" ", text).strip().rstrip(":")


def split_list(text: str) -> list[str]:
    """The items of a numbered-list continuation, whitespace collapsed (empty items kept: a rule drops them).

    A completion continues after "9." so its first piece is item 9's text; a chat answer usually
    starts with "9. " itself, which the split removes the same way.
    """
    return [_WS.sub(" ", piece).strip() for piece in _ITEM.split(text)[::2]]


def split_chat_list(text: str, start: int) -> tuple[list[str], list[tuple[str, str]]]:
    """(tasks, dropped) of a chat answer to the bootstrap prompt, which asks for one task per numbered
    line from number `start` on and nothing else. Dropped, each as (reason, text), are what is no task:
    - `preamble`: text before the first numbered line ("Sure! Here are more tasks:"), also when the
      stop sequence `\n\n` cut off the list after it (an answer of one line ending in a colon);
    - `unnumbered`: an answer with no numbered line at all ("I'm ready to help. What's the task?");
    - `renumbered`: lines numbered below `start`, a list begun again at 1: small chat models answer
      the listed tasks that way ("1. Yes, the sentence is grammatically correct.") instead of adding to them.
    Empty items (and an empty answer) are kept as tasks for a rule to drop, as `split_list` keeps them."""
    parts = _ITEM.split(text)
    head = _WS.sub(" ", parts[0]).strip()
    if len(parts) == 1:
        if not head:
            return [head], []  # an empty answer: the rules call it `empty`
        return [], [("preamble" if head.endswith(":") else "unnumbered", head)]
    dropped = [("preamble", head)] if head else []
    tasks = []
    for number, item in zip(parts[1::2], parts[2::2]):
        item = _WS.sub(" ", item).strip()
        if int(number) < start:
            dropped.append(("renumbered", f"{number}. {item}"))
        else:
            tasks.append(item)
    return tasks, dropped


def parse_yes_no(text: str) -> bool | None:
    """True for an answer starting with "yes", False for "no", None otherwise (case and punctuation ignored)."""
    m = re.match(r"\W*(yes|no)\b", text.strip(), flags=re.IGNORECASE)
    if m is None:
        return None
    return m.group(1).lower() == "yes"


@dataclass
class Instance:
    """One generated example of a task."""

    input: str
    output: str


@dataclass
class Dropped:
    """An instance a rule removed, with the rule's reason."""

    instance: Instance
    reason: str


def _input_output(text: str) -> Instance:
    """Split one example into input and output at its "Output:" marker (no marker: all output)."""
    if _OUTPUT.search(text):
        parts = _OUTPUT.split(text)
        inp, out = parts[0].strip(), parts[1].strip()
    else:
        inp, out = "", text.strip()
    if _INPUT.search(out):  # the model ran on into a second input: keep the first output only
        out = _INPUT.split(out)[0].strip()
    inp = _LEADING_INPUT.sub("", inp).strip()
    return Instance(inp, out)


def parse_input_first(text: str) -> list[Instance]:
    """Instances of an ordinary task: "Example N" blocks of input fields and an "Output:", or one
    "Output:" alone; nothing when neither marker is there."""
    text = text.strip()
    if _EXAMPLE.search(text):
        return [_input_output(piece.strip()) for piece in _EXAMPLE.split(text) if piece.strip()]
    if _OUTPUT.search(text):
        return [_input_output(text)]
    return []


def parse_output_first(text: str) -> list[Instance]:
    """Instances of a classification task: "Class label: L" followed by the input for that label
    (the label is the output; a label with nothing after it has an empty input)."""
    if CLASS_LABEL not in text:
        return []
    out = []
    for piece in text.split(CLASS_LABEL)[1:]:
        label, _, rest = piece.strip().partition("\n")
        out.append(Instance(rest.strip(), label.strip()))
    return out


def filter_instances(instances: list[Instance], *, truncated: bool, max_instances: int,
                     rng: random.Random) -> tuple[list[Instance], list[Dropped]]:
    """Self-Instruct's instance rules, in order. Returns (kept, dropped with reasons).

    - the answer was cut by length: its last instance is dropped (`instance_truncated`);
    - input == output (`same_input_output`), empty output (`empty_output`), input or output ending
      with ':' (`ends_with_colon`);
    - the same non-empty input with different outputs drops every instance of the task (`conflicting_outputs`);
    - exact repeats (`duplicate_instance`);
    - more than `max_instances`: a seeded sample is kept (`over_max_instances`), in the original order.
    """
    dropped: list[Dropped] = []
    items = list(instances)
    if truncated and items:
        dropped.append(Dropped(items.pop(), "instance_truncated"))
    valid = []
    for it in items:
        reason = ("same_input_output" if it.input == it.output else
                  "empty_output" if it.output == "" else
                  "ends_with_colon" if it.input.strip().endswith(":") or it.output.strip().endswith(":") else None)
        if reason:
            dropped.append(Dropped(it, reason))
        else:
            valid.append(it)
    outputs: dict[str, str] = {}
    conflict = False
    for it in valid:
        if it.input and outputs.setdefault(it.input, it.output) != it.output:
            conflict = True
            break
    if conflict:
        return [], dropped + [Dropped(it, "conflicting_outputs") for it in valid]
    seen: set[tuple[str, str]] = set()
    unique = []
    for it in valid:
        key = (it.input, it.output)
        if key in seen:
            dropped.append(Dropped(it, "duplicate_instance"))
        else:
            seen.add(key)
            unique.append(it)
    if len(unique) > max_instances:
        keep = set(rng.sample(range(len(unique)), max_instances))
        dropped += [Dropped(it, "over_max_instances") for i, it in enumerate(unique) if i not in keep]
        unique = [it for i, it in enumerate(unique) if i in keep]
    return unique, dropped
