"""The `anthropic` provider's online path (official SDK -> engine -> call log) against a loopback server
speaking the Messages API wire format, errors included."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataforge.catalog.handle import StepHandle
from dataforge.catalog.query import run_select
from dataforge.catalog.store import Catalog
from dataforge.errors import UserError
from dataforge.llm.config import LLMConfig
from dataforge.llm.engine import run_requests
from dataforge.llm.types import CallFailure, Completion, Message, Request
from dataforge.steps.base import RunContext
from servers.anthropic_wire import AnthropicWireServer

KEY_ENV = "DATAFORGE_TEST_ANTHROPIC_KEY"
MODEL = "claude-haiku-4-5"


@pytest.fixture
def server(monkeypatch):
    with AnthropicWireServer(api_key="sk-ant-test-" + "k" * 30) as s:
        monkeypatch.setenv(KEY_ENV, s.api_key)
        yield s


def cfg(server: AnthropicWireServer, **kw) -> LLMConfig:
    base = dict(provider="anthropic", model=MODEL, base_url=server.url, api_key_env=KEY_ENV, max_concurrency=1,
                max_retries=2, retry_backoff_s=0.01, temperature=0.3, prices={MODEL: (1.0, 5.0)})
    return LLMConfig(**{**base, **kw})


def ctx(tmp_path: Path, build_id: str = "b1") -> RunContext:
    return RunContext(recipe_path=tmp_path / "r.yaml", seed=0, step_id="gen", build_id=build_id,
                      catalog=StepHandle(Catalog(tmp_path / "cat.duckdb")), log=lambda _m: None)


def chat(*prompts: str, temperature: float = 0.3) -> list[Request]:
    return [Request(provider="anthropic", model=MODEL, temperature=temperature, stop=("END",),
                    messages=(Message(role="system", content="Answer briefly."), Message(role="user", content=p)))
            for p in prompts]


def messages_calls(server: AnthropicWireServer) -> list:
    return server.requests_to("POST", "/v1/messages")


def test_answers_are_logged_and_a_rerun_pays_nothing(server, tmp_path):
    c = ctx(tmp_path)
    results = run_requests(chat("what is a tide", "name a comet"), cfg(server), c)
    assert [r.text for r in results] == ["ECHO: WHAT IS A TIDE", "ECHO: NAME A COMET"]
    assert results[0].finish_reason == "end_turn" and results[0].output_tokens == 5

    sent = messages_calls(server)[0]
    assert sent.headers["anthropic-version"]
    body = sent.json()
    assert body["system"] == "Answer briefly." and [m["role"] for m in body["messages"]] == ["user"]
    assert body["temperature"] == 0.3 and body["stop_sequences"] == ["END"] and body["model"] == MODEL

    logged = run_select(c.catalog.path, "select * from llm_calls where status = 'ok' order by response")
    assert logged["response"].to_list() == ["ECHO: NAME A COMET", "ECHO: WHAT IS A TIDE"]
    assert (logged["cost_usd"] > 0).all() and set(logged["provider"]) == {"anthropic"}

    again = run_requests(chat("what is a tide", "name a comet"), cfg(server), ctx(tmp_path, "b2"))
    assert [r.text for r in again] == [r.text for r in results] and all(r.cached for r in again)
    assert len(messages_calls(server)) == 2


def test_rate_limit_is_retried_after_the_servers_retry_after(server, tmp_path):
    server.fail_next("rate_limit_error", times=1, retry_after=0.05)
    c = ctx(tmp_path)
    # A backoff of 600 s would stall the test: only the server's Retry-After gets it through quickly.
    results = run_requests(chat("hello"), cfg(server, retry_backoff_s=600), c)
    assert [r.text for r in results] == ["ECHO: HELLO"]
    rows = run_select(c.catalog.path, "select status, error from llm_calls order by created_at")
    assert rows["status"].to_list() == ["retry", "ok"]
    assert "429" in rows["error"][0] and "rate limit" in rows["error"][0]


def test_overloaded_529_is_retried_then_reported_as_a_failure(server, tmp_path):
    server.fail_next("overloaded_error", times=2)
    results = run_requests(chat("first", "second"), cfg(server, max_retries=1), ctx(tmp_path))
    assert isinstance(results[0], CallFailure) and "529" in results[0].error and "Overloaded" in results[0].error
    assert isinstance(results[1], Completion) and results[1].text == "ECHO: SECOND"
    assert len(messages_calls(server)) == 3


def test_invalid_request_is_a_clear_failure_and_not_retried(server, tmp_path):
    server.fail_when("FORBIDDEN-TOPIC", "invalid_request_error")
    results = run_requests(chat("FORBIDDEN-TOPIC please", "fine"), cfg(server), ctx(tmp_path))
    assert isinstance(results[0], CallFailure)
    assert "HTTP 400" in results[0].error and "prompt is invalid" in results[0].error
    assert results[1].text == "ECHO: FINE"
    assert len(messages_calls(server)) == 2  # the 400 was not sent again


def test_a_parameter_the_api_rejects_names_the_parameter(server, tmp_path):
    # LLMConfig allows temperature up to 2 (OpenAI's range); the Messages API stops at 1.
    results = run_requests(chat("a", temperature=1.5) + chat("b"), cfg(server), ctx(tmp_path))
    assert isinstance(results[0], CallFailure) and "temperature: range: 0..1" in results[0].error
    assert results[1].text == "ECHO: B"


def test_every_call_rejected_raises_with_the_api_message(server, tmp_path):
    server.fail_when("REJECT", "invalid_request_error")
    with pytest.raises(UserError, match="prompt is invalid"):
        run_requests(chat("REJECT a", "REJECT b"), cfg(server), ctx(tmp_path))


def test_temperature_above_the_api_range_is_refused_before_any_call(server):
    with pytest.raises(ValueError, match="above 1, the most the Anthropic API accepts"):
        cfg(server, temperature=1.5)
    assert messages_calls(server) == []


def test_wrong_key_stops_the_run_without_showing_the_key(server, tmp_path, monkeypatch):
    secret = "sk-ant-wrong-" + "x" * 30
    monkeypatch.setenv(KEY_ENV, secret)
    c = ctx(tmp_path)
    with pytest.raises(UserError) as e:
        run_requests(chat("a", "b"), cfg(server), c)
    text = str(e.value)
    assert "401" in text and "anthropic" in text
    assert secret not in text and secret[:8] not in text and secret[-8:] not in text
    assert len(messages_calls(server)) == 1  # a refused key is not retried
    dump = run_select(c.catalog.path, "select * from llm_calls").write_csv()
    assert secret not in dump and "401" in dump


def test_the_key_is_never_written_to_the_catalog(server, tmp_path):
    server.fail_next("rate_limit_error", retry_after=0.01)
    c = ctx(tmp_path)
    run_requests(chat("x", "y"), cfg(server), c)
    for table in ("llm_calls", "builds", "steps"):
        assert server.api_key not in run_select(c.catalog.path, f"select * from {table}").write_json()
