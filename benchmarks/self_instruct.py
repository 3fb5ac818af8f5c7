"""Self-Instruct bootstrap at scale: `generate.self_instruct` keeps 10,000 instructions from a loopback
model, and its filtering is set beside the reference's way of filtering.

    .venv/bin/python benchmarks/self_instruct.py                 # 10,000 instructions
    .venv/bin/python benchmarks/self_instruct.py --target 2000   # a shorter run

The model is a loopback OpenAI-compatible server (an asyncio HTTP/1.1 server in its own process)
that answers every completion at once. Its answers continue the prompt's numbered list (items 9 to
15 at most, as the reference's stop at item 16 allows) with instructions built from word pools of
ours: about forty sentence patterns with one to four slots each, so fresh items are often new but
items of a one-slot pattern soon repeat one another, as a real model's do; some items echo or
lightly edit an item of the prompt, and a few break Self-Instruct's heuristic rules (too short,
a blacklisted word, "Write a program", leading punctuation). The text of an answer depends only on
the prompt (an RNG keyed on its hash), so a run repeats exactly.

The build is the real thing: `dataforge build` of a recipe with `generate.self_instruct` (completion
style, the reference's defaults: 5 prompts a round, 8 instructions a prompt, at most 2 from the
machine pool, ROUGE-L threshold 0.7, `most_similar` and `avg_similarity_score` for every kept row),
every call logged in the catalog's `llm_calls`, every dropped candidate in `rejections`. It stops
after the bootstrap (`identify: false`, `instances: false`): the instruction pool is what this
measures. Time spent in filtering is measured inside the run by wrapping the step's filter
(heuristic rules, the ROUGE-L pool, the most-similar lists).

The reference's way of filtering is Self-Instruct's bootstrap loop: each candidate that passed the
rules is scored with `rouge_score`'s `RougeScorer(["rougeL"]).score` against the whole pool (seeds
plus every instruction kept before it), the best score decides, and the 10 best give
`most_similar`. Scoring 10,000 instructions that way takes hours, so it runs on candidates sampled
at random from the run, each against the pool exactly as it was when that candidate arrived, and
its full time is extrapolated from the pairs/s it reached there: the pairs the whole run compares
divided by that rate. The sample also checks exactness: its best scores must equal dataforge's and
its decisions (drop at >= 0.7, as `filter.rouge_l`) must match. The reference spreads the pairs
over a 4-process pool; on this 2-core machine that can at best halve its time, which the ratio is
also given for.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "recipes" / "data" / "self_instruct_seeds.jsonl"
OUT = Path(__file__).resolve().parent / "results" / "self_instruct.json"
KEY_ENV = "DATAFORGE_BENCH_SI_KEY"

# -- the loopback model's vocabulary (ours) ---------------------------------------------------------
POOLS: dict[str, list[str]] = {
    "topic": ["photosynthesis", "the French Revolution", "compound interest", "volcanoes", "remote work",
              "recycling", "black holes", "the water cycle", "machine learning", "public speaking",
              "vaccines", "the stock market", "climate change", "ancient Egypt", "electric cars",
              "sleep hygiene", "social media", "coral reefs", "the immune system", "inflation",
              "renewable energy", "the Roman Empire", "quantum computing", "urban gardening", "jazz music",
              "the printing press", "earthquakes", "meditation", "cryptocurrency", "bees", "plate tectonics",
              "the Cold War", "nutrition labels", "solar panels", "time zones", "the human heart",
              "minimum wage", "space tourism", "fast fashion", "chess strategy", "wildfires", "online privacy"],
    "audience": ["a five-year-old", "a high school student", "a busy parent", "a retired engineer",
                 "a new employee", "a tourist", "a skeptical friend", "a first-year nursing student",
                 "a small business owner", "a non-native speaker", "a history teacher", "a software developer"],
    "verb": ["Explain", "Describe", "Summarize", "Outline", "Discuss", "Analyze", "Evaluate", "Illustrate"],
    "genre": ["poem", "short story", "haiku", "limerick", "song chorus", "fable", "diary entry", "dialogue",
              "news headline", "product review", "speech", "riddle", "movie pitch", "letter"],
    "tone": ["formal", "friendly", "humorous", "persuasive", "polite", "enthusiastic", "neutral", "sarcastic",
             "concise", "encouraging"],
    "text": ["email", "paragraph", "sentence", "tweet", "cover letter", "complaint", "apology",
             "job description", "recipe", "thank-you note", "essay introduction", "press release"],
    "number": ["three", "four", "five", "six", "seven", "ten", "two"],
    "goal": ["save money on groceries", "fall asleep faster", "learn a new language", "stay focused at work",
             "reduce food waste", "make new friends in a new city", "prepare for a job interview",
             "keep houseplants alive", "train for a marathon", "cut down on screen time",
             "organize a small kitchen", "improve handwriting", "write a better resume", "study for an exam"],
    "situation": ["on a tight budget", "with only ten minutes a day", "while traveling", "with two small kids",
                  "after a long illness", "in a noisy apartment", "without a car", "during winter"],
    "thing": ["board games", "podcasts", "weekend activities", "healthy snacks", "birthday gifts",
              "science fair projects", "team-building exercises", "vegetarian dinners", "books for teenagers",
              "indoor hobbies", "names for a bakery", "questions for a first date", "ways to say thank you"],
    "purpose": ["a rainy afternoon", "a family reunion", "a long flight", "a school fundraiser",
                "a team meeting", "a camping trip", "a first week at university", "a retirement party"],
    "language": ["French", "Spanish", "German", "Japanese", "Italian", "Portuguese", "Korean", "Swahili"],
    "label_a": ["positive", "true", "formal", "spam", "fact", "urgent", "relevant", "sarcastic"],
    "label_b": ["negative", "false", "informal", "not spam", "opinion", "not urgent", "irrelevant", "sincere"],
    "item": ["sentence", "movie review", "tweet", "customer message", "news headline", "email subject line",
             "restaurant review", "statement", "comment", "question"],
    "math": ["the area of a triangle with base 6 and height 4", "the average of 12, 15 and 21",
             "the next number in the sequence 2, 4, 8, 16", "the square root of 144", "15% of 80",
             "the number of minutes in three days", "the perimeter of a square with side 9",
             "the sum of the first ten odd numbers", "the greatest common divisor of 48 and 36"],
    "person": ["Marie Curie", "Nelson Mandela", "Leonardo da Vinci", "Ada Lovelace", "Mahatma Gandhi",
               "Frida Kahlo", "Albert Einstein", "Cleopatra", "Isaac Newton", "Rosa Parks"],
    "place": ["Iceland", "Kyoto", "the Amazon rainforest", "the Sahara", "Venice", "Patagonia", "Istanbul",
              "the Great Barrier Reef", "Mongolia", "New Orleans"],
    "role": ["a teacher", "a nurse", "a chef", "a pilot", "a librarian", "a farmer", "a software tester",
             "a firefighter", "an architect", "a journalist"],
    "obj": ["a bicycle", "a smartphone", "a coffee mug", "an umbrella", "a backpack", "a desk lamp",
            "a pair of running shoes", "a water bottle", "a houseplant", "a toaster"],
    "shape": ["a table", "a bulleted list", "a numbered list", "a short paragraph", "two sentences"],
}

PATTERNS = [
    "{verb} {topic} to {audience}.",
    "{verb} how {topic} affects daily life, in words {audience} would understand.",
    "Write a {genre} about {topic} in a {tone} voice.",
    "Write a {genre} about {topic} for {audience}.",
    "Rewrite the following {text} in a {tone} tone.",
    "Make this {text} more {tone} without changing its meaning.",
    "Give me {number} tips to {goal} {situation}.",
    "Suggest {number} ways to {goal}.",
    "What are some good {thing} for {purpose}?",
    "List {number} {thing} that would suit {purpose}.",
    "Translate the sentence into {language}.",
    "Translate this {text} into {language} and keep the {tone} tone.",
    "Classify the {item} as {label_a} or {label_b}.",
    "Decide whether the given {item} is {label_a} or {label_b}, and explain your choice.",
    "Calculate {math}.",
    "Find {math} and show your steps.",
    "Write a short biography of {person} for {audience}.",
    "What would {person} think about {topic}? Answer in {shape}.",
    "Plan a three-day trip to {place} {situation}.",
    "Describe the climate and culture of {place} in {shape}.",
    "Imagine you are {role}. Describe a typical day at work.",
    "Write a job interview question for {role} and a strong answer to it.",
    "Write a product description for {obj} in a {tone} tone.",
    "Come up with {number} unusual uses for {obj}.",
    "Compare {topic} and {topic} in {shape}.",
    "What is the difference between {topic} and {topic}?",
    "Summarize the main arguments for and against {topic}.",
    "Create a quiz with {number} questions about {topic}.",
    "Generate {number} discussion questions about {topic} for {audience}.",
    "Explain the causes of {topic} in {shape}.",
    "Tell me a fun fact about {topic}.",
    "Is the following statement about {topic} {label_a} or {label_b}?",
    "Give an example of {topic} in everyday life.",
    "Write a {text} to a neighbour asking them to {goal}, in a {tone} tone.",
    "Help me {goal} {situation}.",
    "How can {audience} {goal}?",
    "Write a dialogue between {role} and {audience} about {topic}.",
    "Brainstorm {number} names for a podcast about {topic}.",
    "Suggest a title for a {genre} about {person}.",
    "Name {number} famous people connected with {place}.",
]
BROKEN = [  # items that break one of Self-Instruct's rules: (the item, the reason the step gives)
    ("Sort them.", "too_short"), ("Fix it", "too_short"), ("Answer this question", "too_short"),
    ("Draw a {obj} in the style of a children's book.", "blacklist"),
    ("Plot the growth of {topic} over the last ten years.", "blacklist"),
    ("Describe the picture of {place} below.", "blacklist"),
    ("Write a program that lists {number} {thing}.", "forbidden_prefix"),
    ("- {verb} {topic} to {audience}.", "leading_punctuation"),
]
ASPECTS = ["the history of", "the economics of", "common myths about", "the science behind", "the future of",
           "the ethics of", "the pros and cons of", "recent debates about", "the basics of", "the risks of",
           "everyday uses of", "the role of children in", "local news about", "a beginner's guide to"]
CONSTRAINTS = ["Keep it under 100 words.", "Use simple language.", "Include at least one concrete example.",
               "Avoid technical jargon.", "End with a question for the reader.", "Use a bulleted list.",
               "Mention one surprising statistic.", "Write it as a numbered list of steps.",
               "Do not use the letter z.", "Make it suitable for a school newsletter.",
               "Add a short summary at the end.", "Use the second person throughout.",
               "Give each point a one-line justification.", "Keep every sentence short.",
               "Include a title.", "Write it in the past tense.", "Cite a well-known book if you can.",
               "Explain any numbers you use.", "Make the first sentence catchy.", "Limit yourself to three sentences."]
OPENINGS = ["Write a short poem about", "Explain to me how to think about", "Give three reasons to care about",
            "Summarize what most people get wrong about", "Describe a day in the life of someone who studies",
            "Invent a board game whose theme is", "Draft a museum sign explaining", "Pitch a startup built around",
            "Write the opening paragraph of a mystery novel set among", "List the questions a journalist should ask about",
            "Propose a science experiment involving", "Write a children's song about", "Compose a haiku sequence on",
            "Create a lesson plan that introduces", "Argue for a ban on", "Argue against regulating",
            "Design a weekend workshop about", "Invent a holiday that celebrates", "Write a recipe inspired by",
            "Describe the sounds and smells of", "Write a eulogy for", "Plan a school trip to see",
            "Write a customer complaint about", "Explain the legal issues around", "Make a packing list for visiting",
            "Write a limerick featuring", "Outline a documentary about", "Name five careers that involve",
            "Sketch out a comic strip about", "Give a safety briefing on", "Write a job advert for someone to look after",
            "Translate into plain English a scientific abstract on", "Suggest a name and slogan for a shop selling",
            "Describe how aliens might misunderstand", "Write a two-line rhyme about", "Rank from best to worst five kinds of",
            "Tell the story of how someone fell in love with", "Explain the physics of", "Estimate the yearly cost of running",
            "Write interview questions for an expert on", "Summarize a town meeting that argued about",
            "Write a horoscope that mentions", "Come up with a quiz round on", "Describe the perfect gift for fans of",
            "Write a motivational speech for people who build", "Explain why teenagers might love", "Debunk a rumour about",
            "Write a product review of", "Describe the history of", "Predict what will happen to"]
MODIFIERS = ["in the style of a sports commentator", "using only questions", "as if you were a pirate",
             "in exactly fifty words", "from the point of view of a cat", "in the form of a text message",
             "as a tweet thread", "with a twist ending", "in a gloomy tone", "so that it can be skimmed",
             "in the voice of a nineteenth-century explorer", "as a bedtime story", "as a radio advert",
             "with three footnotes", "in the style of a weather forecast", "using a cooking metaphor",
             "as a podcast intro", "as a set of instructions for robots", "in rhyming couplets",
             "as a grant application", "as a diary entry written in the year 2300", "as a travel blog post",
             "as a conversation between two grandparents", "in under twenty words", "as a museum audio guide"]
READERS = ["a five-year-old", "readers of a gardening magazine", "an audience of retired sailors",
           "a city council", "someone who has never left their village", "a busy manager", "first-year students",
           "a room of skeptical engineers", "new parents", "teenage gamers", "a book club", "hotel guests",
           "volunteers at a food bank", "a rival company", "nervous flyers", "a village newsletter",
           "amateur astronomers", "a chess club", "factory workers on a night shift", "primary school teachers",
           "people learning English", "a wedding audience", "marathon runners", "small farmers", "museum curators"]
_SLOT = re.compile(r"\{(\w+)\}")
_LISTED = re.compile(r"(?m)^(\d+)\. (.+)$")


QUALITIES = ["wooden", "electric", "medieval", "tropical", "urban", "vintage", "solar", "arctic", "digital",
             "handmade", "rural", "underwater", "portable", "ancient", "organic", "miniature", "wireless",
             "seasonal", "nocturnal", "volcanic", "coastal", "industrial", "automated", "edible", "recycled",
             "desert", "alpine", "public", "floating", "homemade", "Victorian", "robotic", "wild", "frozen",
             "neighbourhood", "student", "family", "community", "mobile", "self-driving"]
THINGS = ["bridges", "libraries", "gardens", "trains", "markets", "castles", "bicycles", "kitchens", "farms",
          "museums", "festivals", "forests", "lighthouses", "bakeries", "telescopes", "schools", "hospitals",
          "harbours", "orchestras", "bookshops", "greenhouses", "stadiums", "theatres", "airports", "ferries",
          "beehives", "vineyards", "glaciers", "caves", "mushrooms", "spiders", "owls", "dolphins", "tortoises",
          "clocks", "star charts", "board games", "newspapers", "radios", "umbrellas", "lanterns", "kites",
          "sculptures", "quilts", "pianos", "sandwiches", "noodles", "cheeses", "teapots", "violins", "canoes",
          "tents", "playgrounds", "parades", "elevators", "vending machines", "wind turbines", "batteries",
          "satellites", "submarines"]


def _slot(name: str, rng: random.Random) -> str:
    if name == "topic":  # topics compose: "floating markets", "the history of solar kitchens"
        r = rng.random()
        value = rng.choice(POOLS["topic"]) if r < 0.3 else f"{rng.choice(QUALITIES)} {rng.choice(THINGS)}"
        return f"{rng.choice(ASPECTS)} {value}" if rng.random() < 0.2 else value
    return rng.choice(POOLS[name])


def fill(pattern: str, rng: random.Random) -> str:
    """A pattern with its slots filled, and often a constraint sentence after it."""
    text = _SLOT.sub(lambda m: _slot(m.group(1), rng), pattern)
    if rng.random() < 0.3:
        text += " " + rng.choice(CONSTRAINTS)
    return text


def item(rng: random.Random, listed: list[str]) -> str:
    """One list item of the loopback model."""
    r = rng.random()
    if r < 0.04 and listed:  # repeats an example of the prompt
        return rng.choice(listed)
    if r < 0.08 and listed:  # an example of the prompt with one word swapped
        words = rng.choice(listed).split()
        words[rng.randrange(len(words))] = rng.choice(THINGS).split()[-1]
        return " ".join(words)
    if r < 0.11:
        return fill(rng.choice(BROKEN)[0], rng)
    if r < 0.4:  # a fixed sentence pattern: these soon repeat one another
        return fill(rng.choice(PATTERNS), rng)
    parts = [rng.choice(OPENINGS), _slot("topic", rng)]  # composed: opening, topic, and optional style,
    if rng.random() < 0.7:                                 # reader and constraint
        parts.append(rng.choice(MODIFIERS))
    if rng.random() < 0.6:
        parts.append(f"for {rng.choice(READERS)}")
    text = " ".join(parts) + "."
    return text + (" " + rng.choice(CONSTRAINTS) if rng.random() < 0.3 else "")


def answer(prompt: str) -> tuple[str, str]:
    """(text, finish_reason) continuing the prompt's numbered list; the same prompt, the same answer."""
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    listed = [t for _, t in _LISTED.findall(prompt)]
    first = len(listed) + 1
    items = [item(rng, listed) for _ in range(rng.randint(3, 16 - first))]
    text = " " + "\n".join([items[0]] + [f"{first + k}. {t}" for k, t in enumerate(items[1:], 1)])
    if rng.random() < 0.01:  # now and then an answer runs into max_tokens
        return text[: len(text) // 2], "length"
    return text, "stop"


# -- the loopback server ------------------------------------------------------------------------------
def _reply(body: dict) -> bytes:
    chat = "messages" in body
    prompt = body["messages"][-1]["content"] if chat else body["prompt"]
    text, finish = answer(prompt)
    usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        obj = {"id": "chatcmpl-si", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [choice], "usage": usage}
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        obj = {"id": "cmpl-si", "object": "text_completion", "created": 0, "model": body["model"],
               "choices": [choice], "usage": usage}
    return json.dumps(obj).encode()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            raw = await reader.readexactly(length) if length else b"{}"
            out = _reply(json.loads(raw))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                         + str(len(out)).encode() + b"\r\n\r\n" + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/v1"


# -- instrumenting the run ------------------------------------------------------------------------
class Probe:
    """Wraps the step's filter to time it and record what the ROUGE-L pool was offered."""

    def __init__(self) -> None:
        self.filter_s = 0.0
        self.rules_s = 0.0
        self.rouge_s = 0.0
        self.offers: list[tuple[int, list[str], list[bool], list[float]]] = []  # pool size before, texts, keep, best
        self.pool = None

    def install(self) -> None:
        from dataforge.steps.filter.heuristics import HeuristicsFilter
        from dataforge.steps.generate import self_instruct as si
        from dataforge.steps.generate.similarity import InstructionPool

        probe = self
        filt, offer, reasons = si._Run._filter, InstructionPool.offer, HeuristicsFilter.reasons

        def timed_filter(run, *a, **k):
            t0 = time.perf_counter()
            try:
                return filt(run, *a, **k)
            finally:
                probe.filter_s += time.perf_counter() - t0

        def timed_offer(pool, texts):
            probe.pool = pool
            before = len(pool)
            t0 = time.perf_counter()
            out = offer(pool, texts)
            probe.rouge_s += time.perf_counter() - t0
            probe.offers.append((before, list(texts), [v.keep for v in out], [v.score for v in out]))
            return out

        def timed_reasons(rules, df):
            t0 = time.perf_counter()
            try:
                return reasons(rules, df)
            finally:
                probe.rules_s += time.perf_counter() - t0

        si._Run._filter = timed_filter
        InstructionPool.offer = timed_offer
        HeuristicsFilter.reasons = timed_reasons

    def candidates(self) -> list[tuple[str, int, bool, float]]:
        """Every text offered to the pool, in order: (text, pool size when it arrived, kept, best F)."""
        out = []
        for before, texts, keep, best in self.offers:
            n = before
            for t, k, b in zip(texts, keep, best):
                out.append((t, n, k, b))
                n += k
        return out


# -- the reference's way of filtering -----------------------------------------------------------------
def reference_sample(probe: Probe, n: int, threshold: float, seed: int = 0) -> dict:
    """Self-Instruct's loop with rouge_score on `n` candidates drawn at random from the run, each against
    the pool as it was when it arrived; returns the rate, the extrapolated time and the exactness check."""
    import numpy as np
    from rouge_score import rouge_scorer

    cands = probe.candidates()
    pool = probe.pool.texts
    pairs_total = sum(size for _, size, _, _ in cands)
    pick = sorted(random.Random(seed).sample(range(len(cands)), min(n, len(cands))))
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = 0
    same_best = same_decision = 0
    t0 = time.perf_counter()
    for i in pick:
        text, size, kept, best = cands[i]
        scores = [scorer.score(text, old)["rougeL"].fmeasure for old in pool[:size]]
        top = max(scores) if scores else 0.0
        {pool[j]: scores[j] for j in np.argsort(scores)[-10:][::-1]}  # the reference's most_similar
        pairs += size
        same_best += top == best
        same_decision += (top < threshold) == kept
    seconds = time.perf_counter() - t0
    rate = pairs / seconds
    return {"candidates_sampled": len(pick), "pairs_sampled": pairs, "seconds_sampled": seconds,
            "pairs_per_s": rate, "candidates_in_run": len(cands), "pairs_in_run": pairs_total,
            "seconds_full_extrapolated": pairs_total / rate,
            "identical_best_score": f"{same_best}/{len(pick)}", "identical_decision": f"{same_decision}/{len(pick)}"}


def _score_with(scorer, inst: str, old: str):
    return scorer.score(inst, old)


def reference_as_written(probe: Probe, n: int, seed: int = 1) -> dict:
    """The reference's loop as its script runs it: for each candidate a 4-process `multiprocessing.Pool`
    maps `scorer.score` over the pool. Timed on `n` candidates drawn at random; the run's total is
    estimated as candidates x the sample's mean seconds per candidate (an unbiased estimate)."""
    from functools import partial
    from multiprocessing import Pool

    from rouge_score import rouge_scorer

    cands = probe.candidates()
    pool = probe.pool.texts
    pick = random.Random(seed).sample(range(len(cands)), min(n, len(cands)))
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    t0 = time.perf_counter()
    for i in pick:
        text, size, _, _ = cands[i]
        with Pool(4) as p:
            scores = [x["rougeL"].fmeasure for x in p.map(partial(_score_with, scorer, text), pool[:size])]
        max(scores, default=0.0)
    seconds = time.perf_counter() - t0
    per = seconds / len(pick)
    return {"candidates_sampled": len(pick), "seconds_sampled": seconds, "seconds_per_candidate": per,
            "seconds_full_extrapolated": per * len(cands)}


# -- the run ---------------------------------------------------------------------------------------
RECIPE = """
name: bench-self-instruct
seed: 42
llm:
  provider: openai
  model: loopback
  base_url: {url}
  api_key_env: {key}
  max_concurrency: 8
steps:
  - id: seeds
    type: source.jsonl
    path: {seeds}
  - id: instructions
    type: generate.self_instruct
    target: {target}
    max_rounds: 100000
    identify: false
    instances: false
outputs:
  bench_self_instruct: instructions
"""


def run(target: int, sample: int, written: int = 0, keep_catalog: Path | None = None) -> dict:
    from dataforge import api
    from dataforge.catalog.query import run_select

    probe = Probe()
    probe.install()
    os.environ[KEY_ENV] = "sk-loopback"
    proc, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            recipe = Path(tmp) / "bench.yaml"
            recipe.write_text(RECIPE.format(url=url, key=KEY_ENV, seeds=SEEDS, target=target), encoding="utf-8")
            cat = Path(tmp) / "bench.duckdb"
            t0 = time.perf_counter()
            res = api.build(recipe, catalog=cat, log=lambda _m: None)
            wall = time.perf_counter() - t0
            q = lambda sql: run_select(cat, sql)  # noqa: E731
            calls = q("select count(*) as n, sum(input_tokens) as i, sum(output_tokens) as o from llm_calls")
            kept = q("select count(*) as n, max(round) as r, avg(avg_similarity_score) as a from bench_self_instruct")
            rej = q("select reason, count(*) as n from rejections group by reason order by n desc")
            notes = q("select notes from steps where step_id = 'instructions' order by rowid desc limit 1")
            if keep_catalog is not None:
                import shutil

                shutil.copy(cat, keep_catalog)
    finally:
        proc.terminate()
        proc.wait(10)
    assert res.status == "ok", res
    rejections = dict(zip(rej["reason"].to_list(), rej["n"].to_list()))
    cands = probe.candidates()
    out = {
        "target": target, "kept": int(kept["n"][0]), "rounds": int(kept["r"][0]) + 1,
        "calls": int(calls["n"][0]), "input_tokens": int(calls["i"][0]), "output_tokens": int(calls["o"][0]),
        "mean_avg_similarity_score": float(kept["a"][0]), "rejections": rejections,
        "candidates_offered_to_rouge": len(cands),
        "wall_s": wall, "filter_s": probe.filter_s, "filter_rules_s": probe.rules_s,
        "filter_rouge_pool_s": probe.rouge_s, "step_notes": notes["notes"][0],
    }
    print(f"bootstrap to {target:,} instructions (loopback model, answers at once, 5 prompts a round):")
    print(f"  wall time (whole `dataforge build`)  {wall:8.1f} s   goal < 120 s: {'met' if wall < 120 else 'NOT met'}")
    print(f"  rounds {out['rounds']:,}, calls {out['calls']:,} ({out['input_tokens']:,} in / {out['output_tokens']:,} "
          f"out tokens), kept {out['kept']:,}")
    total_cands = len(cands) + sum(v for k, v in rejections.items() if k not in ("rouge_l", "over_target", "truncated"))
    print(f"  candidates {total_cands:,} (whole answers cut at max_tokens: {rejections.get('truncated', 0)}): "
          f"rejections by reason {rejections}")
    print(f"  filtering {probe.filter_s:8.2f} s  (rules {probe.rules_s:.2f} s; ROUGE-L pool incl. most_similar "
          f"{probe.rouge_s:.2f} s)  = {100 * probe.filter_s / wall:.0f}% of the wall time")
    ref = reference_sample(probe, sample, 0.7)
    out["reference_rouge_score"] = ref
    est = ref["seconds_full_extrapolated"]
    out["speedup_filtering"] = est / probe.filter_s
    out["speedup_filtering_vs_2_processes"] = est / 2 / probe.filter_s
    out["speedup_rouge_only"] = est / probe.rouge_s
    print(f"  reference filtering, rouge_score in one process (every candidate against the whole pool): "
          f"~{est:,.0f} s = {est / 3600:.2f} h, EXTRAPOLATED")
    print(f"    from {ref['candidates_sampled']} candidates sampled at random from the run "
          f"({ref['pairs_sampled']:,} pairs in {ref['seconds_sampled']:.1f} s, {ref['pairs_per_s']:,.0f} pairs/s) "
          f"to the {ref['pairs_in_run']:,} pairs of the whole run")
    print(f"    on the sample: best score identical {ref['identical_best_score']}, "
          f"decision identical {ref['identical_decision']}")
    print(f"    ratio: all of dataforge's filtering {out['speedup_filtering']:,.0f}x faster "
          f"({out['speedup_filtering_vs_2_processes']:,.0f}x if the reference used both cores perfectly; "
          f"its ROUGE-L pool alone {out['speedup_rouge_only']:,.0f}x)")
    if written:
        lit = reference_as_written(probe, written)
        out["reference_as_written"] = lit
        est2 = lit["seconds_full_extrapolated"]
        out["speedup_filtering_vs_as_written"] = est2 / probe.filter_s
        print(f"  reference filtering as its script runs it (a 4-process Pool per candidate): ~{est2:,.0f} s = "
              f"{est2 / 3600:.2f} h, EXTRAPOLATED from {lit['candidates_sampled']} random candidates "
              f"({lit['seconds_per_candidate']:.3f} s each) to the run's {len(cands):,}")
        print(f"    ratio: {out['speedup_filtering_vs_as_written']:,.0f}x")
    best = max(out["speedup_filtering"], out.get("speedup_filtering_vs_as_written", 0.0))
    print(f"  goal: filtering >= 500x faster than the reference: "
          f"{'met' if out['speedup_filtering'] >= 500 else ('met against the script as written only' if best >= 500 else 'NOT met')}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--target", type=int, default=10_000, help="instructions to keep (default 10,000)")
    ap.add_argument("--sample", type=int, default=200, help="candidates the reference scores (default 200)")
    ap.add_argument("--as-written", type=int, default=16,
                    help="candidates the reference scores the way its script does, a Pool(4) each (default 16; 0: skip)")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/self_instruct.json")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    out = run(args.target, args.sample, args.as_written)
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                       "load_average": os.getloadavg()},
           "command": f"python benchmarks/self_instruct.py --target {args.target} --sample {args.sample} "
                                  f"--as-written {args.as_written}", **out}
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
