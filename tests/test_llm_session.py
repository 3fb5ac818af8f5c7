"""The engine's session: several rounds through one provider and one call log; the typed LLM context;
presence/frequency penalties reach the wire and stay out of the hash when unset; the call log commits a
stream of answers in a few batches, each within its delay. Many short rounds
(Self-Instruct's shape): no catalog write of their own without a budget, answers still found again
(same session, later sessions), budgets still exact."""

from __future__ import annotations

import duckdb
import pytest

from dataforge.catalog.handle import StepHandle
from dataforge.catalog.store import Catalog
from dataforge.errors import BudgetExceeded
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


# -- many short rounds ----------------------------------------------------------------------------

def counting(monkeypatch) -> list[int]:
    """Rows of each commit to `llm_calls`."""
    writes: list[int] = []
    real = Catalog.record_llm_calls

    def record(self, rows):
        rows = list(rows)
        writes.append(len(rows))
        real(self, rows)

    monkeypatch.setattr(Catalog, "record_llm_calls", record)
    return writes


def ok_rows(path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("select count(*) from llm_calls where status = 'ok'").fetchone()[0]
    finally:
        con.close()


def test_rounds_share_commits_and_every_answer_is_found_again(server, tmp_path, monkeypatch):
    path = tmp_path / "c.duckdb"
    cat = StepHandle(Catalog(path))
    writes = counting(monkeypatch)
    rounds = [[req(f"q{r}-{i}") for i in range(3)] for r in range(30)]
    with engine.session(cfg(server), LLMContext(build_id="b1", step_id="gen", store=cat)) as s:
        for reqs in rounds:
            s.run(reqs)
        again = s.run([rounds[0][0], rounds[29][2]])  # answered this session: not sent again
    assert [r.text for r in again] == ["ECHO: Q0-0", "ECHO: Q29-2"]
    assert s.stats.called == 90 and s.stats.cached == 2
    assert server.count("POST", "/v1/completions") == 90
    assert len(writes) < 15  # the call log's background task commits several rounds at once
    assert ok_rows(path) == 90  # and the session's close commits the rest

    # A later session (another build: a rerun) finds them in any round, not only its first one.
    with engine.session(cfg(server), LLMContext(build_id="b2", step_id="gen", store=cat)) as s2:
        s2.run([req("fresh-1")])
        got = s2.run(rounds[7] + [req("fresh-2")])
    assert [r.text for r in got] == ["ECHO: Q7-0", "ECHO: Q7-1", "ECHO: Q7-2", "ECHO: FRESH-2"]
    assert s2.stats.called == 2 and s2.stats.cached == 3
    assert server.count("POST", "/v1/completions") == 92


def test_a_budget_commits_every_round_and_counts_across_rounds(server, tmp_path, monkeypatch):
    path = tmp_path / "c.duckdb"
    cat = StepHandle(Catalog(path))
    writes = counting(monkeypatch)
    with engine.session(cfg(server, max_calls=5), LLMContext(build_id="b1", step_id="gen", store=cat)) as s:
        s.run([req("a"), req("b")])
        assert len(writes) == 1 and ok_rows(path) == 2  # committed before the next round starts
        s.run([req("c"), req("d")])
        assert ok_rows(path) == 4
        last = s.run([req("e"), req("f")])
    with pytest.raises(BudgetExceeded):
        engine.raise_if_stopped(last)
    assert server.count("POST", "/v1/completions") == 5
    assert ok_rows(path) == 5


def test_the_call_log_commits_a_stream_of_answers_in_few_commits_each_within_its_delay():
    """A steady stream of answers: each is committed at most `max_delay_s` (plus the commit) after it
    arrived, in a few batches rather than one commit per answer; `close` commits the rest."""
    import asyncio
    import time

    from dataforge.llm.calllog import CallLog

    commits: list[tuple[float, list[float]]] = []  # (committed at, when each row arrived)

    class Store:
        def record_llm_calls(self, rows):
            commits.append((time.monotonic(), [r["arrived"] for r in rows]))

    async def stream() -> None:
        log = CallLog(Store(), max_delay_s=0.3)
        log.start()
        for i in range(60):  # 1.2 s of answers, one every 20 ms
            log.add({"request_hash": f"h{i}", "status": "ok", "arrived": time.monotonic()})
            await asyncio.sleep(0.02)
        await log.close()

    asyncio.run(stream())
    assert sum(len(rows) for _, rows in commits) == 60
    assert 3 <= len(commits) <= 6
    assert max(at - min(rows) for at, rows in commits[:-1]) < 0.3 + 0.25


def _refusing_store(committed: list[str], refusals: list[Exception]) -> type:
    """A call-log store that raises each of `refusals` once, then records request hashes in `committed`."""

    class Store:
        def record_llm_calls(self, rows):
            if refusals:
                raise refusals.pop()
            committed.extend(r["request_hash"] for r in rows)

    return Store


def test_a_call_log_commit_that_fails_keeps_its_answers_for_the_next_one():
    """A commit refused mid-step (the catalog locked past the wait by a long reader, a full disk) lost
    its batch of paid answers, and stopped the background commits for the rest of the step."""
    import asyncio

    from dataforge.errors import CatalogBusy
    from dataforge.llm.calllog import CallLog

    committed: list[str] = []
    refusals = [CatalogBusy("catalog c.duckdb is locked by another process")]
    Store = _refusing_store(committed, refusals)

    async def stream() -> None:
        log = CallLog(Store(), max_delay_s=0.05)
        log.start()
        for i in range(10):
            log.add({"request_hash": f"h{i}", "status": "ok"})
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert committed == [f"h{i}" for i in range(10)]  # by the background task, before close
        await log.close()

    asyncio.run(stream())
    assert committed == [f"h{i}" for i in range(10)]


def test_closing_the_call_log_after_a_failed_commit_does_not_wait_out_the_retry_delay():
    import asyncio
    import time

    from dataforge.errors import CatalogBusy
    from dataforge.llm.calllog import CallLog

    committed: list[str] = []
    refusals = [CatalogBusy("catalog c.duckdb is locked by another process")]
    Store = _refusing_store(committed, refusals)

    async def stop_soon_after_a_refusal() -> float:
        log = CallLog(Store(), max_rows=1, max_delay_s=30.0)  # a full buffer commits at once ...
        log.start()
        log.add({"request_hash": "h0", "status": "ok"})
        while refusals:  # ... and is refused: the next try is 30 s away
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        await log.close()
        return time.monotonic() - t0

    assert asyncio.run(stop_soon_after_a_refusal()) < 5 and committed == ["h0"]
