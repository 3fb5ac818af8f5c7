"""The engine's session: several rounds through one provider and one call log; the typed LLM context;
presence/frequency penalties reach the wire and stay out of the hash when unset."""

from __future__ import annotations

import duckdb
import pytest

from dataforge.catalog.handle import StepHandle
from dataforge.catalog.store import Catalog
from dataforge.llm import engine
from dataforge.llm.config import LLMConfig
from dataforge.llm.context import LLMContext, llm_context
from dataforge.llm.types import Request
from dataforge.steps.base import RunContext
from servers.openai_batch import OpenAIBatchServer


KEY_ENV = "DATAFORGE_TEST_SESSION_KEY"


@pytest.fixture
def server(monkeypatch):
    with OpenAIBatchServer() as s:
        monkeypatch.setenv(KEY_ENV, s.api_key)
        yield s


def cfg(server, **kw) -> LLMConfig:
    return LLMConfig(provider="openai", model="echo-1", base_url=server.url + "/v1", api_key_env=KEY_ENV,
                     max_retries=0, **kw)


def req(text: str, **kw) -> Request:
    return Request(provider="openai", model="echo-1", prompt=text, max_tokens=5, **kw)


def test_session_runs_rounds_with_one_provider(server, tmp_path, monkeypatch):
    cat = StepHandle(Catalog(tmp_path / "c.duckdb"))
    made = []
    real = engine.make_provider
    monkeypatch.setattr(engine, "make_provider", lambda *a, **k: made.append(1) or real(*a, **k))
    ctx = LLMContext(build_id="b1", step_id="gen", store=cat, log=lambda m: None)
    with engine.session(cfg(server), ctx) as s:
        first = s.run([req("one"), req("two")])
        second = s.run([req("three"), req("one")])  # "one" is answered from the call log
    assert [r.text for r in first + second] == ["ECHO: ONE", "ECHO: TWO", "ECHO: THREE", "ECHO: ONE"]
    assert made == [1]
    assert s.stats.requests == 4 and s.stats.called == 3 and s.stats.cached == 1
    assert server.count("POST", "/v1/completions") == 3
    con = duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True)
    assert con.execute("select count(*) from llm_calls where status = 'ok'").fetchone()[0] == 3


def test_session_opens_no_provider_when_the_log_answers(server, tmp_path, monkeypatch):
    cat = StepHandle(Catalog(tmp_path / "c.duckdb"))
    ctx = LLMContext(build_id="b1", step_id="gen", store=cat, log=lambda m: None)
    engine.run_requests([req("a")], cfg(server), ctx)
    monkeypatch.setattr(engine, "make_provider", lambda *a, **k: pytest.fail("provider opened"))
    with engine.session(cfg(server), LLMContext(build_id="b2", step_id="gen", store=cat)) as s:
        assert s.run([req("a")])[0].text == "ECHO: A"


def test_llm_context_from_a_run_context(tmp_path):
    cat = StepHandle(Catalog(tmp_path / "c.duckdb"))
    rc = RunContext(recipe_path=tmp_path / "r.yaml", seed=3, step_id="s", build_id="b", catalog=cat)
    lc = llm_context(rc)
    assert (lc.build_id, lc.step_id, lc.store) == ("b", "s", cat)
    assert lc.resolve("m.gguf") == tmp_path / "m.gguf"
    assert llm_context(lc) is lc


def test_penalties_reach_the_server_and_unset_ones_keep_the_hash(server, tmp_path):
    plain = req("x")
    assert "presence_penalty" not in plain.canonical()
    assert req("x", presence_penalty=2.0).hash() != plain.hash()
    engine.run_requests([req("x", presence_penalty=2.0, frequency_penalty=0.0)], cfg(server),
                        LLMContext(log=lambda m: None))
    body = server.requests_to("POST", "/v1/completions")[-1].json()
    assert body["presence_penalty"] == 2.0 and body["frequency_penalty"] == 0.0


def test_anthropic_refuses_penalties_in_the_config():
    with pytest.raises(ValueError, match="frequency_penalty is not supported by provider 'anthropic'"):
        LLMConfig(provider="anthropic", model="m", frequency_penalty=0.5)
