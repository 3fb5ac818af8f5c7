"""`mode: batch` end to end against loopback servers speaking the OpenAI Batch and Anthropic Message Batches APIs:
submit, stop after `batch_wait_s`, resume on the next build without resubmitting, resubmit failed/expired
items alone, log every answer in `llm_calls`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataforge import api
from dataforge.catalog.handle import StepHandle
from dataforge.catalog.query import run_select
from dataforge.catalog.store import Catalog
from dataforge.errors import UserError
from dataforge.llm.batch import BatchPending, run_batch
from dataforge.llm.batch_backends import BatchAPIError, make_backend
from dataforge.llm.config import LLMConfig
from dataforge.llm.pricing import cost_usd, price
from dataforge.llm.types import CallFailure, Completion, Message, Request
from dataforge.steps.base import RunContext
from servers.anthropic_wire import AnthropicWireServer
from servers.openai_batch import OpenAIBatchServer

KEY_ENV = "DATAFORGE_TEST_BATCH_KEY"
MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini"}


class Fake:
    """One provider's loopback server plus what tests need to know about it."""

    def __init__(self, provider: str, processing_s: float):
        self.provider = provider
        if provider == "anthropic":
            self.server = AnthropicWireServer(processing_s=processing_s)
            self.base_url = self.server.url
            self.create_path = "/v1/messages/batches"
        else:
            self.server = OpenAIBatchServer(validating_s=0.02, processing_s=processing_s)
            self.base_url = self.server.url + "/v1"
            self.create_path = "/v1/batches"

    def creates(self) -> int:
        return len(self.server.requests_to("POST", self.create_path))

    def submitted_prompts(self, i: int) -> list[str]:
        """The user prompts of the i-th batch created."""
        if self.provider == "anthropic":
            body = self.server.requests_to("POST", self.create_path)[i].json()
            return sorted(item["params"]["messages"][-1]["content"] for item in body["requests"])
        bid = sorted(self.server.batches)[i]
        content = self.server.files[self.server.batches[bid].input_file_id]["content"].decode()
        return sorted(json.loads(line)["body"]["messages"][-1]["content"] for line in content.splitlines())

    def fail(self, marker: str, kind: str, times: int = 1) -> None:
        """kind: expired | transient (worth resubmitting) | invalid (not)."""
        s = self.server
        if kind == "expired":
            s.batch_item(marker, "expired", times)
        elif self.provider == "anthropic":
            s.batch_item(marker, "errored", times,
                         error_type="overloaded_error" if kind == "transient" else "invalid_request_error")
        else:
            s.batch_item(marker, "failed", times, status=500 if kind == "transient" else 400)

    def drop_batches(self) -> None:
        self.server.batches.clear()


@pytest.fixture(params=["anthropic", "openai"])
def fake(request, monkeypatch):
    f = Fake(request.param, processing_s=0.15)
    with f.server:
        monkeypatch.setenv(KEY_ENV, f.server.api_key)
        yield f


def cfg_for(fake: Fake, **kw) -> LLMConfig:
    base = dict(provider=fake.provider, model=MODELS[fake.provider], base_url=fake.base_url, api_key_env=KEY_ENV,
                batch_poll_s=0.02, batch_wait_s=10, max_retries=1, temperature=0.5,
                prices={MODELS["anthropic"]: (1.0, 5.0)})
    return LLMConfig(**{**base, **kw})


def ctx_for(tmp_path: Path, build_id: str = "b1") -> RunContext:
    cat = StepHandle(Catalog(tmp_path / "cat.duckdb"))
    return RunContext(recipe_path=tmp_path / "r.yaml", seed=0, step_id="gen", build_id=build_id, catalog=cat,
                      log=lambda _m: None)


def reqs(fake: Fake, prompts: list[str]) -> list[Request]:
    return [Request(provider=fake.provider, model=MODELS[fake.provider], temperature=0.5,
                    messages=(Message(role="system", content="Be brief."), Message(role="user", content=p)))
            for p in prompts]


def texts(results) -> list[str | None]:
    return [r.text if isinstance(r, Completion) else None for r in results]


def calls(ctx: RunContext, where: str = "true"):
    return run_select(ctx.catalog.path, f"select * from llm_calls where {where} order by created_at")


def test_batch_answers_in_order_and_logs_every_answer(fake, tmp_path):
    ctx = ctx_for(tmp_path)
    prompts = ["alpha one", "beta two", "alpha one", "gamma three"]
    results = run_batch(reqs(fake, prompts), cfg_for(fake), ctx)
    assert texts(results) == ["ECHO: ALPHA ONE", "ECHO: BETA TWO", "ECHO: ALPHA ONE", "ECHO: GAMMA THREE"]
    assert fake.creates() == 1
    assert fake.submitted_prompts(0) == ["alpha one", "beta two", "gamma three"]  # duplicates sent once
    ok = calls(ctx, "status = 'ok'")
    assert ok.height == 3 and set(ok["build_id"]) == {"b1"} and set(ok["step_id"]) == {"gen"}
    assert (ok["cost_usd"] > 0).all() and (ok["output_tokens"] == 3).all()
    batches = run_select(ctx.catalog.path, "select distinct batch_id, status from llm_batches")
    assert batches.height == 1 and batches["status"][0] == "succeeded"

    # A rerun answers everything from the call log and submits nothing.
    again = run_batch(reqs(fake, prompts), cfg_for(fake), ctx_for(tmp_path, "b2"))
    assert texts(again) == texts(results) and all(r.cached for r in again)
    assert fake.creates() == 1


def test_interrupted_build_resumes_the_stored_batch_without_resubmitting(fake, tmp_path):
    fake.server.processing_s = 60
    prompts = ["one", "two", "three"]
    with pytest.raises(BatchPending) as e:
        run_batch(reqs(fake, prompts), cfg_for(fake, batch_wait_s=0), ctx_for(tmp_path, "b1"))
    msg = str(e.value)
    stored = run_select(ctx_for(tmp_path).catalog.path, "select distinct batch_id, status from llm_batches")
    assert stored.height == 1 and stored["status"][0] == "submitted"
    assert stored["batch_id"][0] in msg and "dataforge build" in msg and "3 requests" in msg
    assert isinstance(e.value, UserError)

    fake.server.finish_batches()
    ctx = ctx_for(tmp_path, "b2")
    results = run_batch(reqs(fake, prompts), cfg_for(fake), ctx)
    assert texts(results) == ["ECHO: ONE", "ECHO: TWO", "ECHO: THREE"]
    assert fake.creates() == 1  # collected, not submitted again
    assert calls(ctx, "status = 'ok'")["build_id"].to_list() == ["b2"] * 3


def test_a_batch_submitted_but_never_recorded_is_found_again(fake, tmp_path, monkeypatch):
    """The build dies between the provider accepting a batch and its id being stored."""
    from dataforge.catalog.store import Catalog

    prompts = ["one", "two", "three"]

    def die(self, intent, batch_id):
        raise KeyboardInterrupt  # as a Ctrl-C or a kill at that moment would

    monkeypatch.setattr(Catalog, "confirm_batch", die)
    with pytest.raises(KeyboardInterrupt):
        run_batch(reqs(fake, prompts), cfg_for(fake), ctx_for(tmp_path, "b1"))
    monkeypatch.undo()
    monkeypatch.setenv(KEY_ENV, fake.server.api_key)
    left = run_select(ctx_for(tmp_path).catalog.path, "select batch_id, status, intent from llm_batches")
    assert set(left["status"]) == {"submitting"} and left["batch_id"].null_count() == 3
    assert fake.creates() == 1

    fake.server.finish_batches()
    ctx = ctx_for(tmp_path, "b2")
    assert texts(run_batch(reqs(fake, prompts), cfg_for(fake), ctx)) == ["ECHO: ONE", "ECHO: TWO", "ECHO: THREE"]
    assert fake.creates() == 1  # found at the provider by its intent, not paid twice
    stored = run_select(ctx.catalog.path, "select distinct batch_id, status from llm_batches")
    assert stored.height == 1 and stored["status"][0] == "succeeded"


def test_an_intent_the_provider_never_got_is_sent(fake, tmp_path, monkeypatch):
    prompts = ["one", "two"]
    backend = type(make_backend(cfg_for(fake)))

    def die_before_sending(self, items, meta):
        raise KeyboardInterrupt

    monkeypatch.setattr(backend, "submit", die_before_sending)
    with pytest.raises(KeyboardInterrupt):
        run_batch(reqs(fake, prompts), cfg_for(fake), ctx_for(tmp_path, "b1"))
    monkeypatch.undo()
    monkeypatch.setenv(KEY_ENV, fake.server.api_key)
    assert fake.creates() == 0
    fake.server.processing_s = 0.05
    ctx = ctx_for(tmp_path, "b2")
    assert texts(run_batch(reqs(fake, prompts), cfg_for(fake), ctx)) == ["ECHO: ONE", "ECHO: TWO"]
    assert fake.creates() == 1
    statuses = run_select(ctx.catalog.path, "select status, count(*) as n from llm_batches group by 1 order by 1")
    assert dict(statuses.iter_rows()) == {"succeeded": 2, "unsent": 2}


def test_failed_and_expired_items_are_resubmitted_alone(fake, tmp_path):
    fake.fail("late", "expired")
    fake.fail("flaky", "transient")
    fake.fail("broken", "invalid")
    ctx = ctx_for(tmp_path)
    prompts = ["fine a", "late b", "flaky c", "broken d", "fine e"]
    results = run_batch(reqs(fake, prompts), cfg_for(fake), ctx)
    assert texts(results) == ["ECHO: FINE A", "ECHO: LATE B", "ECHO: FLAKY C", None, "ECHO: FINE E"]
    assert isinstance(results[3], CallFailure) and results[3].status == "error"
    assert fake.creates() == 2
    assert fake.submitted_prompts(1) == ["flaky c", "late b"]  # only the items worth another try
    # Every failed item is in the call log too, with its reason: `retry` when submitted again, else `error`.
    failed = calls(ctx, "status in ('retry', 'error')")
    assert sorted(zip(failed["status"], [e.split(": ")[1] for e in failed["error"]])) == [
        ("error", "errored"), ("retry", "errored"), ("retry", "expired")]
    statuses = run_select(ctx.catalog.path, "select status, count(*) n from llm_batches group by status order by status")
    assert dict(zip(statuses["status"], statuses["n"])) == {"errored": 2, "expired": 1, "succeeded": 4}


def test_resubmission_stops_after_batch_max_rounds(fake, tmp_path):
    fake.fail("never", "expired", times=10)
    ctx = ctx_for(tmp_path)
    results = run_batch(reqs(fake, ["never done", "ok"]), cfg_for(fake, batch_max_rounds=2), ctx)
    assert texts(results)[1] == "ECHO: OK"
    assert isinstance(results[0], CallFailure) and "expired" in results[0].error
    assert fake.creates() == 2
    assert calls(ctx, "status in ('retry', 'error')")["status"].to_list() == ["retry", "error"]


def test_a_batch_the_provider_forgot_is_submitted_again(fake, tmp_path):
    fake.server.processing_s = 60
    with pytest.raises(BatchPending):
        run_batch(reqs(fake, ["x", "y"]), cfg_for(fake, batch_wait_s=0), ctx_for(tmp_path))
    fake.drop_batches()  # deleted on the provider's side
    fake.server.processing_s = 0.05
    results = run_batch(reqs(fake, ["x", "y"]), cfg_for(fake), ctx_for(tmp_path, "b2"))
    assert texts(results) == ["ECHO: X", "ECHO: Y"]
    assert fake.creates() == 2
    lost = run_select(ctx_for(tmp_path).catalog.path, "select count(*) n from llm_batches where status = 'lost'")
    assert lost["n"][0] == 2


def test_max_calls_limits_what_is_submitted(fake, tmp_path):
    results = run_batch(reqs(fake, ["a", "b", "c"]), cfg_for(fake, max_calls=2), ctx_for(tmp_path))
    assert texts(results)[:2] == ["ECHO: A", "ECHO: B"]
    assert isinstance(results[2], CallFailure) and results[2].status == "skipped"
    assert "max_calls" in results[2].error
    assert fake.submitted_prompts(0) == ["a", "b"]


def test_bad_key_is_a_clear_error_that_never_shows_the_key(fake, tmp_path, monkeypatch):
    secret = "sk-wrong-" + "9" * 24
    monkeypatch.setenv(KEY_ENV, secret)
    ctx = ctx_for(tmp_path)
    with pytest.raises(BatchAPIError) as e:
        run_batch(reqs(fake, ["a"]), cfg_for(fake), ctx)
    assert "401" in str(e.value) and secret not in str(e.value) and secret[-8:] not in str(e.value)
    assert isinstance(e.value, UserError)


def test_the_key_is_never_written_to_the_catalog(fake, tmp_path):
    fake.fail("late", "expired")
    ctx = ctx_for(tmp_path)
    run_batch(reqs(fake, ["late", "fine"]), cfg_for(fake), ctx)
    for table in ("llm_calls", "llm_batches", "builds", "steps"):
        dump = run_select(ctx.catalog.path, f"select * from {table}").write_json()
        assert fake.server.api_key not in dump


def test_local_provider_has_no_batch_mode(tmp_path):
    with pytest.raises(UserError, match="mode: batch needs llm.provider openai or anthropic"):
        run_batch([Request(provider="local", model="m", prompt="x")], LLMConfig(provider="local"),
                  ctx_for(tmp_path))


RECIPE = """
name: batch-demo
seed: 1
llm:
  provider: {provider}
  model: {model}
  base_url: {base_url}
  api_key_env: {key_env}
  batch_poll_s: 0.02
  batch_wait_s: {wait}
steps:
  - id: rows
    type: source.inline
    rows: [{rows}]
  - id: answers
    type: generate.prompt
    mode: batch
    prompt: "Explain {{{{ topic }}}}"
    n: {n}
outputs:
  answers: answers
"""


def batch_recipe(fake: Fake, wait: float, topics: tuple[str, ...] = ("tides", "comets"), n: int = 2) -> str:
    rows = ", ".join(f"{{topic: {t}}}" for t in topics)
    return RECIPE.format(provider=fake.provider, model=MODELS[fake.provider], base_url=fake.base_url,
                         key_env=KEY_ENV, wait=wait, rows=rows, n=n)


def test_recipe_with_generate_prompt_in_batch_mode(fake, tmp_path, write, catalog, cli):
    fake.server.processing_s = 60

    def recipe(wait: float) -> Path:
        return write("batch.yaml", batch_recipe(fake, wait))

    first = cli("build", recipe(0), "--catalog", catalog, "--quiet")
    said = " ".join(first.output.split())  # the console may wrap long lines
    assert first.exit_code == 2
    assert "still being processed" in said and "run `dataforge build` again" in said and "Traceback" not in said
    fake.server.finish_batches()
    res = api.build(recipe(10), catalog=catalog)  # batch_wait_s is not part of the fingerprint
    assert res.status == "ok" and fake.creates() == 1
    df = api.read("answers", catalog=catalog).sort("topic", "sample_index")
    assert df["response"].to_list() == ["ECHO: EXPLAIN COMETS"] * 2 + ["ECHO: EXPLAIN TIDES"] * 2
    assert df["sample_index"].to_list() == [0, 1, 0, 1]


def test_a_build_left_waiting_does_not_resubmit_the_item_the_provider_refused(fake, tmp_path, write, catalog, cli,
                                                                             monkeypatch):
    # The first batch ends with "broken" refused (400) and "flaky" worth another try; flaky's new batch is still
    # running when the build stops. The next build collects flaky and leaves broken failed, as a plain rebuild of
    # a stored step would; --retry-failed asks it again.
    fake.fail("broken", "invalid")
    fake.fail("flaky", "transient")
    backend = type(make_backend(cfg_for(fake)))
    collect = backend.collect
    slow = [True]

    def collect_then_slow_down(self, bid):
        if slow:
            fake.server.processing_s = 60  # batches created from now on keep running
        return collect(self, bid)

    monkeypatch.setattr(backend, "collect", collect_then_slow_down)
    path = write("refused.yaml", batch_recipe(fake, 2, ("fine", "broken", "flaky"), n=1))
    first = cli("build", path, "--catalog", catalog, "--quiet")
    assert first.exit_code == 2 and "still being processed" in " ".join(first.output.split())
    assert fake.creates() == 2 and fake.submitted_prompts(1) == ["Explain flaky"]
    slow.clear()
    fake.server.finish_batches()
    fake.server.processing_s = 0.05

    plain = cli("build", path, "--catalog", catalog, "--quiet")
    assert plain.exit_code == 0, plain.output
    assert fake.creates() == 2  # broken is not submitted again
    assert sorted(api.read("answers", catalog=catalog)["topic"]) == ["fine", "flaky"]
    rejected = api.sql("select reason from rejections where step_id = 'answers'", catalog=catalog)
    assert rejected["reason"].to_list() == ["llm_error"]

    retried = cli("build", path, "--catalog", catalog, "--quiet", "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert fake.creates() == 3 and fake.submitted_prompts(2) == ["Explain broken"]
    assert sorted(api.read("answers", catalog=catalog)["topic"]) == ["broken", "fine", "flaky"]


def test_llm_batches_table_comes_from_its_named_migration(tmp_path):
    cat = Catalog(tmp_path / "cat.duckdb")
    cols = run_select(cat.path, "select column_name from information_schema.columns where table_name = 'llm_batches' "
                     "order by ordinal_position")["column_name"].to_list()
    assert cols == ["batch_id", "provider", "endpoint", "model", "build_id", "step_id", "request_hash", "custom_id",
                    "request", "status", "error", "submitted_at", "updated_at", "intent"]
    applied = run_select(cat.path, "select name from _migrations")["name"].to_list()
    assert "m002_llm_batches" in applied and "m005_batch_intents" in applied


def test_openai_chat_and_completion_requests_go_to_separate_batches(tmp_path, monkeypatch):
    fake = Fake("openai", processing_s=0.05)
    with fake.server:
        monkeypatch.setenv(KEY_ENV, fake.server.api_key)
        plain = Request(provider="openai", model=MODELS["openai"], prompt="once upon a time", max_tokens=3)
        results = run_batch(reqs(fake, ["hi"]) + [plain], cfg_for(fake), ctx_for(tmp_path))
        assert texts(results) == ["ECHO: HI", "ECHO: ONCE UPON"]
        assert results[1].finish_reason == "length"
        assert sorted(b.endpoint for b in fake.server.batches.values()) == ["/v1/chat/completions",
                                                                            "/v1/completions"]


def test_openai_batch_rejected_at_validation_reports_the_line_error(tmp_path, monkeypatch):
    fake = Fake("openai", processing_s=0.05)
    with fake.server:
        monkeypatch.setenv(KEY_ENV, fake.server.api_key)
        bad = Request(provider="openai", model=MODELS["openai"], prompt="x", extra={"temperature": 5})
        with pytest.raises(UserError, match=r"line 1: Invalid 'temperature'"):
            run_batch([bad], cfg_for(fake), ctx_for(tmp_path))
        assert fake.creates() == 1  # a rejected file is not sent again


def test_the_documented_batch_model_has_a_price():
    """docs/llm-batch.md's example model: without a price its budget_usd would count $0 per call."""
    cfg = LLMConfig(provider="anthropic", model=MODELS["anthropic"])
    assert price(cfg) == (1.0, 5.0)
    assert cost_usd(cfg, 1_000_000, 0, batch=True) == 0.5


def test_the_longest_model_prefix_prices_a_model():
    # Opus 4.5 lists at a third of Opus 4/4.1, whose prefix it shares
    assert price(LLMConfig(provider="anthropic", model="claude-opus-4-5-20251101")) == (5.0, 25.0)
    assert price(LLMConfig(provider="anthropic", model="claude-opus-4-1-20250805")) == (15.0, 75.0)
