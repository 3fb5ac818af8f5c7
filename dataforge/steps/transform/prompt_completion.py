"""`transform.prompt_completion`: (instruction, input, output) rows as prompt/completion pairs for fine-tuning.

`style: self_instruct` renders the layouts the Self-Instruct release fine-tuned GPT-3 on: seven
layouts for rows with an input and six without, one picked per row at random (seeded by the row
id, so a row keeps its layout whatever else is in the dataset). As in that release, half the rows
(seeded) get their input lightly rewritten: a single leading `Field:` name is removed and blank
lines become single newlines; repeated (prompt, completion) pairs are dropped (`duplicate`).
"""

from __future__ import annotations

import random
import re
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from dataforge.steps.base import ID, RunContext, Step, StepResult, rejections_frame

# (prompt, completion) format pairs (plain `str.format`: a Jinja render would drop the trailing newline
# the layouts end with); `end` is the end-of-text marker appended to every completion.
WITH_INPUT = [
    ("{instruction}\nInput: {input}\nOutput:", " {output}{end}"),
    ("{instruction}\n\nInput: {input}\n\nOutput:", " {output}{end}"),
    ("Task: {instruction}\nInput: {input}\nOutput:", " {output}{end}"),
    ("{instruction}\n\n{input}\n\nOutput:", " {output}{end}"),
    ("{instruction}\n\n{input}\n\n", "{output}{end}"),
    ("{instruction}\n{input}\n\n", "{output}{end}"),
    ("Task: {instruction}\n\n{input}\n\n", "{output}{end}"),
]
WITHOUT_INPUT = [
    ("{instruction} Output:", " {output}{end}"),
    ("{instruction}\nOutput:", " {output}{end}"),
    ("{instruction}\n\nOutput:", " {output}{end}"),
    ("{instruction}\n", "{output}{end}"),
    ("{instruction}\n\n", "{output}{end}"),
    ("Task: {instruction}\n\n", "{output}{end}"),
]
FIXED = ("{instruction}\n\n{input}\n\n", "{output}{end}")


class PromptCompletion(Step):
    """Render instruction/input/output rows as `prompt` and `completion` columns (with `layout`)."""

    type: Literal["transform.prompt_completion"]
    style: Literal["self_instruct"] = "self_instruct"
    """Layout family: `self_instruct` (the Self-Instruct release's fine-tuning formats)."""
    instruction_column: str = "instruction"
    """Column with the instruction."""
    input_column: str = "input"
    """Column with the input (empty or null: a layout without input)."""
    output_column: str = "output"
    """Column with the output."""
    random_layout: bool = True
    """Pick a layout per row at random (seeded); off: instruction, blank line, input, blank line."""
    rewrite_input_rate: float = Field(default=0.5, ge=0, le=1)
    """Share of rows whose input drops a single leading field name (`Sentence: ...`) and blank lines."""
    end_marker: str = "<|endoftext|>"
    """Appended to every completion (GPT-3's end-of-text token in the release)."""
    dedup: bool = True
    """Drop repeated (prompt, completion) pairs."""

    kind_version: ClassVar[str] = "2"  # 2: layouts keep their trailing newlines

    def required_columns(self) -> list[str]:
        return [self.instruction_column, self.input_column, self.output_column]

    def added_columns(self) -> list[str]:
        return ["prompt", "completion", "layout"]

    def run(self, inputs: list[pl.DataFrame], ctx: RunContext) -> StepResult:
        df = inputs[0]
        ids = df[ID].to_list()
        prompts, completions, layouts = [], [], []
        for rid, ins, inp, out in zip(ids, *(df[c].cast(pl.Utf8).fill_null("").to_list() for c in
                                            (self.instruction_column, self.input_column, self.output_column))):
            rng = random.Random(f"{ctx.seed}:{self.id}:{rid}")
            inp = inp.strip()
            if rng.random() < self.rewrite_input_rate:
                inp = _rewrite(inp)
            if not self.random_layout:
                layout, name = FIXED, "fixed"
            elif inp:
                k = rng.randrange(len(WITH_INPUT))
                layout, name = WITH_INPUT[k], f"with_input_{k + 1}"
            else:
                k = rng.randrange(len(WITHOUT_INPUT))
                layout, name = WITHOUT_INPUT[k], f"without_input_{k + 1}"
            values = dict(instruction=ins.strip(), input=inp, output=out.strip(), end=self.end_marker)
            prompts.append(layout[0].format(**values))
            completions.append(layout[1].format(**values))
            layouts.append(name)
        new = df.with_columns(pl.Series("prompt", prompts, dtype=pl.Utf8),
                              pl.Series("completion", completions, dtype=pl.Utf8),
                              pl.Series("layout", layouts, dtype=pl.Utf8))
        if not self.dedup or new.is_empty():
            return StepResult(df=new)
        first = new.select(pl.struct("prompt", "completion").is_first_distinct()).to_series()
        dropped = new.filter(~first)
        rej = rejections_frame(dropped[ID].to_list(), "duplicate", detail=dropped["prompt"].to_list())
        return StepResult(df=new.filter(first), rejections=rej)


def _rewrite(text: str) -> str:
    """Drop a single leading field name when the input has exactly one (`Sentence: ...`); blank lines -> one newline."""
    names = set(re.findall(r"(\w+):", text))
    if len(names) == 1:
        text = text.split(":", 1)[1].strip()
    return text.replace("\n\n", "\n")
