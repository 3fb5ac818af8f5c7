"""A scripted stand-in for a model behind `ScriptedOpenAI`: answers Self-Instruct's four kinds of prompt.

Bootstrap prompts get a continuation of the numbered list made of varied instructions (drawn from
word lists with an RNG keyed on the prompt, so the same prompt gets the same answer); the
yes/no prompt answers "Yes" for instructions that mention classifying or choosing, else "No";
instance prompts get input-first or output-first examples. Tests replace single answers with
`overrides` (a substring of the prompt -> the answer to give).
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

VERBS = ["Describe", "Explain", "Summarize", "List", "Compare", "Suggest", "Outline", "Write", "Create",
         "Plan", "Evaluate", "Rewrite", "Translate", "Estimate", "Recommend", "Draft", "Design", "Name"]
OBJECTS = ["a lesson plan", "three arguments", "a short story", "a shopping list", "the main steps",
           "a polite email", "two possible causes", "a weekly budget", "a riddle", "a travel itinerary",
           "a product description", "five interview questions", "a safety checklist", "a menu",
           "a motivational quote", "the key differences", "a tweet", "a limerick", "a daily routine"]
TOPICS = ["photosynthesis", "a rainy weekend", "saving money", "learning guitar", "ancient Rome",
          "volcanoes", "remote work", "recycling plastic", "a job interview", "climate change", "chess openings",
          "sleeping better", "a birthday party", "electric cars", "the water cycle", "public speaking",
          "growing tomatoes", "black holes", "time management", "a school science fair", "street food"]
AUDIENCES = ["for a beginner", "for a ten-year-old", "for a busy parent", "for a retired teacher",
             "in under fifty words", "for a group of tourists", "for a new employee", "for a skeptical friend"]
CLASSIFY = ["Classify the sentence about {t} as positive or negative.",
            "Decide whether the claim about {t} is true or false.",
            "Tell me if the question about {t} is about a person, a place or a thing."]


def instruction(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(CLASSIFY).format(t=rng.choice(TOPICS))
    return f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} about {rng.choice(TOPICS)} {rng.choice(AUDIENCES)}."


def _rng(prompt: str) -> random.Random:
    return random.Random(hashlib.sha256(prompt.encode()).hexdigest())


def next_number(prompt: str) -> int:
    """The number the list continues at: one past the listed items."""
    return len(re.findall(r"(?m)^\d+\. \S", prompt)) + 1


class FakeModel:
    """`answer(prompt, body)` for `ScriptedOpenAI`; `items` instructions per bootstrap answer."""

    def __init__(self, items: int = 6, overrides: dict[str, Any] | None = None):
        self.items = items
        self.overrides = overrides or {}

    def __call__(self, prompt: str, body: dict[str, Any]):
        for marker, ans in self.overrides.items():
            if marker in prompt:
                return ans(prompt) if callable(ans) else ans
        if "Is it classification?" in prompt:
            task = prompt.rsplit("Task:", 1)[1].lower()
            return " Yes" if any(w in task for w in ("classify", "decide whether", "tell me if")) else " No"
        if "Class label:" in prompt and "class label" in prompt.split("\n", 1)[0].lower():
            return ("Class label: Positive\nSentence: What a lovely, sunny afternoon.\n"
                    "Class label: Negative\nSentence: The train was late again and I missed my meeting.")
        if prompt.startswith("Come up with examples"):
            return ("Example 1\nTopic: rain\nOutput: Rain falls when drops in clouds grow heavy.\n"
                    "Example 2\nTopic: snow\nOutput: Snow forms when water vapour freezes high up.")
        rng = _rng(prompt)
        chat = "messages" in body
        first = next_number(prompt)
        lines = [instruction(rng) for _ in range(self.items)]
        if chat:
            return "\n".join(f"{first + k}. {text}" for k, text in enumerate(lines))
        return " " + "\n".join([lines[0]] + [f"{first + k}. {text}" for k, text in enumerate(lines[1:], 1)])
