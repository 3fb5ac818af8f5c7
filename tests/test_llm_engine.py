"""The LLM engine and `generate.prompt` against a fast loopback OpenAI-compatible server:
budget stops, parse failures and failed calls as rejections, keys kept secret, Ctrl-C, fingerprints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataforge import api
from dataforge.errors import BudgetExceeded, UserError
from dataforge.llm.limits import Bucket, backoff_delay
from dataforge.llm.parsers import JsonParser, ParseError, RegexParser, extract_json
from dataforge.llm.providers.base import Secrets
from conftest import paid_calls
from servers._http import LoopbackServer, Reply, Req
from servers.fault_proxy import FaultPlan, FaultProxy
from servers.openai_batch import OpenAIBatchServer

KEY_ENV = "DATAFORGE_TEST_OPENAI_KEY"


@pytest.fixture
def server(monkeypatch):
    with OpenAIBatchServer() as s:
        monkeypatch.setenv(KEY_ENV, s.api_key)
        yield s


def recipe(url: str, topics: list[str], *, llm: str = "", step: str = "") -> str:
    rows = "\n".join(f"      - {{topic: {t!r}}}" for t in topics)
    return f"""
name: engine-test
llm:
  provider: openai
  model: echo-1
  base_url: {url}/v1
  api_key_env: {KEY_ENV}
  max_tokens: 3
  max_concurrency: 1
  retry_backoff_s: 0.01
{llm}
steps:
  - id: src
    type: source.inline
    rows:
{rows}
  - id: gen
    type: generate.prompt
    prompt: "{{{{ topic }}}}"
{step}
outputs:
  out: gen
"""


def llm_calls(cat: Path, where: str = "true") -> pl.DataFrame:
    return api.sql(f"select * from llm_calls where {where} order by created_at", catalog=cat)


WORDS = [f"w{i} x y z" for i in range(10)]


def test_budget_stops_cleanly_keeps_paid_work_and_rerun_continues(server, write, catalog, cli):
    # $0.1 per output token; each answer is 3 tokens, so $0.3 a call: a $1 budget pays 3 calls.
    prices = "  prices: {echo-1: [0, 100000]}"
    path = write("r.yaml", recipe(server.url, WORDS, llm=prices + "\n  budget_usd: 1.0"))
    with pytest.raises(BudgetExceeded) as e:
        api.build(path, catalog=catalog)
    msg = str(e.value)
    assert "llm.budget_usd=1 reached" in msg and "7 of 10 requests were not sent" in msg
    assert "raise llm.budget_usd" in msg and "run `dataforge build` again" in msg
    paid = llm_calls(catalog, "status = 'ok'")
    assert paid.height == 3 and paid["cost_usd"].sum() == pytest.approx(0.9)
    assert server.count("POST", "/v1/chat/completions") == 3

    res = cli("build", path, "--catalog", catalog)  # the budget is per build: 3 more calls, then exit code 2
    assert res.exit_code == 2 and "budget_usd=1 reached" in res.output and "4 of 10" in res.output
    assert server.count("POST", "/v1/chat/completions") == 6

    path.write_text(path.read_text().replace("budget_usd: 1.0", "budget_usd: 5.0"))
    result = api.build(path, catalog=catalog)
    assert result.status == "ok" and result.rows["out"] == 10
    assert server.count("POST", "/v1/chat/completions") == 10  # nothing asked twice
    last = llm_calls(catalog, f"build_id = '{result.build_id}'")
    assert (last["status"] == "cached").sum() == 6 and (last["status"] == "ok").sum() == 4


def test_a_budget_stop_states_the_spend_once_calls_in_flight_have_settled(server, write, catalog, monkeypatch):
    # Prompt tokens are estimated before a call (characters / 4); here every estimate is 0, so calls
    # in flight when the budget is reached run past it. The message used to give the spend at the
    # moment the limit was hit ($1.2 while $2.4 was billed).
    import re

    import dataforge.llm.engine as engine

    monkeypatch.setattr(engine, "estimate_tokens", lambda text: 0)
    prices = "  prices: {echo-1: [100000, 0]}"  # $0.1 per prompt token: $0.4 a call
    text = recipe(server.url, WORDS, llm=prices + "\n  budget_usd: 1.0").replace("max_concurrency: 1", "max_concurrency: 4")
    path = write("r.yaml", text)
    with pytest.raises(BudgetExceeded) as e:
        api.build(path, catalog=catalog)
    paid = llm_calls(catalog, "status = 'ok'")["cost_usd"].sum()
    assert paid > 1.0
    said = float(re.search(r"\$([0-9.]+) spent in this build", str(e.value)).group(1))
    assert said == pytest.approx(paid) and "ran past the budget" in str(e.value)


def test_max_calls_stops_the_build(server, write, catalog):
    path = write("r.yaml", recipe(server.url, WORDS, llm="  max_calls: 4"))
    with pytest.raises(BudgetExceeded, match=r"llm.max_calls=4 reached"):
        api.build(path, catalog=catalog)
    assert llm_calls(catalog, "status = 'ok'").height == 4


def test_parse_failures_are_rejections_and_answers_stay_logged(server, write, catalog):
    step = "    parser: {type: regex, pattern: '^ECHO: (?P<word>[A-Z]+)$'}"
    path = write("r.yaml", recipe(server.url, ["alpha", "beta gamma", "delta"], step=step))
    api.build(path, catalog=catalog)
    out = api.read("out", catalog=catalog)
    assert sorted(out["word"]) == ["ALPHA", "DELTA"]
    rej = api.sql("select reason, detail from rejections", catalog=catalog)
    assert rej["reason"].to_list() == ["parse_error"] and "ECHO: BETA GAMMA" in rej["detail"][0]
    assert "ECHO: BETA GAMMA" in llm_calls(catalog, "status = 'ok'")["response"].to_list()


def test_json_parser_validates_the_schema(server, write, catalog):
    step = "    parser: {type: json, schema: {N: int, TAGS: 'list[str]?'}}"
    payloads = ['{"n": 1}', '{"n": 2, "tags": ["a"]}', "not json", '{"n": "x"}']
    path = write("r.yaml", recipe(server.url, payloads, step=step + "\n    llm: {max_tokens: 20}"))
    api.build(path, catalog=catalog)
    out = api.read("out", catalog=catalog).sort("N")
    assert out["N"].to_list() == [1, 2] and out["TAGS"].to_list() == [None, ["A"]]
    details = api.sql("select detail from rejections order by detail", catalog=catalog)["detail"].to_list()
    assert len(details) == 2
    assert any("N: Input should be a valid integer" in d for d in details)
    assert any("no JSON value found" in d for d in details)


def test_retry_failed_asks_again_the_calls_that_failed_and_rebuilds_what_reads_them(server, write, catalog, cli):
    # The server refuses one prompt, then recovers. A plain rebuild reuses the step and says how many calls
    # failed; --retry-failed asks that one again (the call log answers the others), its row joins the output
    # and the step reading it, and `ls` counts it in the same version.
    server.fail_when("poison", 503)
    tail = """
  - id: upper
    type: transform.sql
    from: gen
    query: "select upper(response) as loud from gen"
outputs:
  out: gen
  loud: upper
"""
    path = write("r.yaml", recipe(server.url, ["fine", "poison pill", "also fine"]).split("outputs:")[0] + tail)
    api.build(path, catalog=catalog)
    assert api.read("loud", catalog=catalog).height == 2
    server.online_rules.clear()
    plain = cli("build", path, "--catalog", catalog)
    assert "0 step(s) built, 3 reused" in plain.output
    assert "note: 1 LLM call(s) failed in its last build; --retry-failed asks them again" in " ".join(
        plain.output.split())
    dry = cli("build", path, "--catalog", catalog, "--dry-run", "--retry-failed")
    assert "would-build" in dry.output and "retries 1 that failed" in " ".join(dry.output.split())
    res = cli("build", path, "--catalog", catalog, "--retry-failed")
    assert res.exit_code == 0, res.output
    assert "retrying 1 LLM call(s) that failed in its last build" in " ".join(res.output.split())
    assert "2 step(s) built, 1 reused" in res.output
    assert "dataset out v1: 3 rows (no new version: built again, same fingerprint)" in " ".join(res.output.split())
    assert api.read("out", catalog=catalog).height == 3 and api.read("loud", catalog=catalog).height == 3
    assert llm_calls(catalog, "status = 'ok'").height == 3  # one new call, not three
    listed = api.sql("select name, version, rows from datasets order by name", catalog=catalog).rows()
    assert listed == [("loud", 1, 3), ("out", 1, 3)]
    # ... made by this build: its steps are the ones that report the rows in/out and rejections
    made_by = api.sql("select distinct build_id from datasets", catalog=catalog)["build_id"].to_list()
    assert made_by == [api.history(catalog=catalog, limit=1)[0]["build_id"][0]]
    again = cli("build", path, "--catalog", catalog, "--retry-failed")
    assert "0 step(s) built, 3 reused" in again.output and "retrying" not in again.output


def test_failed_calls_become_llm_error_rejections(server, write, catalog, cli):
    server.fail_when("poison", 400)
    path = write("r.yaml", recipe(server.url, ["fine", "poison pill", "also fine"]))
    api.build(path, catalog=catalog)
    assert api.read("out", catalog=catalog).height == 2
    rej = api.sql("select reason, detail from rejections", catalog=catalog)
    assert rej["reason"].to_list() == ["llm_error"] and "HTTP 400" in rej["detail"][0]
    err = llm_calls(catalog, "status = 'error'")
    assert err.height == 1 and err["prompt"][0].endswith('"poison pill"}]')
    summary = api.calls(catalog=catalog)
    assert summary.select("model", "ok", "failed").rows() == [("openai:echo-1", 2, 1)]
    shown = cli("calls", "--catalog", catalog)
    assert shown.exit_code == 0 and "openai:echo-1" in shown.output
    build = api.history(catalog=catalog)[0]["build_id"][0]
    assert cli("calls", "--build", build, "--catalog", catalog).exit_code == 0
    typo = cli("calls", "--build", build[:-1], "--catalog", catalog)  # an empty table would read as "no calls"
    assert typo.exit_code == 2 and f"no build '{build[:-1]}' in the catalog; recent builds: {build}" in typo.output


class LeakyServer(LoopbackServer):
    """Echoes the bearer key in its error bodies: first a 500 (retried), then 401."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def route(self, req: Req) -> Reply:
        self.calls += 1
        auth = req.headers.get("authorization", "")
        status = 500 if self.calls == 1 else 401
        return Reply.json(status, {"error": {"message": f"bad things with {auth} (key {auth[7:]})",
                                             "type": "invalid_request_error", "code": "invalid_api_key"}})


def test_keys_never_reach_errors_logs_or_the_catalog(write, catalog, monkeypatch):
    secret = "sk-test-SECRETSECRET-0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, secret)
    with LeakyServer() as s:
        path = write("r.yaml", recipe(s.url, ["a", "b"]))
        logs: list[str] = []
        with pytest.raises(UserError) as e:
            api.build(path, catalog=catalog, log=logs.append)
    text = str(e.value) + "\n".join(logs)
    assert "refused" in text and "HTTP 401" in text
    for fragment in (secret, secret[:8], secret[-8:]):
        assert fragment not in text
        for f in catalog.parent.iterdir():
            assert fragment.encode() not in f.read_bytes()
    errors = llm_calls(catalog)["error"].to_list()
    assert len(errors) == 2 and all("[redacted]" in x for x in errors)


def test_ctrl_c_stops_cleanly_and_keeps_completed_calls(server, write, tmp_path):
    with FaultProxy(server.url, FaultPlan(), latency_s=0.2) as proxy:
        path = write("r.yaml", recipe(proxy.url, [f"t{i}" for i in range(20)],
                                      step="    llm: {max_concurrency: 2}"))
        cat = tmp_path / "c.duckdb"
        proc = subprocess.Popen([sys.executable, "-m", "dataforge.cli", "build", str(path), "--catalog", str(cat),
                                 "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, KEY_ENV: server.api_key})
        deadline = time.monotonic() + 60
        while paid_calls(cat) < 5:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 130, out
        assert "interrupted" in out
        kept = paid_calls(cat)
        assert kept >= 5
        # every call it sent is accounted for: answered, failed, or stopped unanswered by the interrupt
        called, ok, failed, cut = re.search(r"(\d+) called \((\d+) ok, (\d+) failed, \d+ retries"
                                            r"(?:, (\d+) stopped unanswered)?", out).groups()
        assert int(called) == int(ok) + int(failed) + int(cut or 0), out
        # it says the answers it got are kept (the LLM step itself stored nothing yet)
        assert f"the {kept:,} LLM answer(s) it got are in the call log, and the next build takes them" in out
        status = duckdb.connect(str(cat), read_only=True).execute("select status from builds").fetchone()[0]
        assert status == "interrupted"
        sent = server.count("POST", "/v1/chat/completions")
        assert kept >= sent - 2  # at most the calls in flight at the interrupt went unlogged
        res = api.build(path, catalog=cat)
        assert res.rows["out"] == 20
        assert server.count("POST", "/v1/chat/completions") - sent == 20 - kept


def test_fingerprint_follows_answer_settings_not_limits(server, write, catalog):
    def fp(llm: str = "", step: str = "") -> str:
        path = write("r.yaml", recipe(server.url, ["a"], llm=llm, step=step))
        return {s.step_id: s.fingerprint for s in api.build(path, catalog=catalog, dry_run=True).steps}["gen"]

    base = fp()
    assert fp(llm="  budget_usd: 3\n  requests_per_minute: 60") == base
    assert fp(step="    llm: {max_concurrency: 7}") == base
    assert fp(step="    llm: {temperature: 0.1}") != base
    assert fp(llm="  temperature: 0.1") == fp(step="    llm: {temperature: 0.1}")
    assert fp(step="    llm: {model: echo-2}") != base


def test_template_reading_a_missing_column_fails_validation(server, write, catalog):
    path = write("r.yaml", recipe(server.url, ["a"]).replace("{{ topic }}", "{{ nope }}"))
    with pytest.raises(UserError, match="nope"):
        api.validate(path, catalog=catalog)


def test_step_llm_override_is_range_checked(server, write, catalog):
    path = write("r.yaml", recipe(server.url, ["a"], step="    llm: {temperature: 9}"))
    with pytest.raises(UserError, match="temperature"):
        api.validate(path, catalog=catalog)


def test_backoff_honours_retry_after_and_grows_with_jitter():
    assert 2.5 <= backoff_delay(0, 1.0, retry_after=2.5) <= 2.75
    for attempt, d in [(0, 1.0), (3, 8.0), (10, 60.0)]:
        assert d / 2 <= backoff_delay(attempt, 1.0, None) <= d


def test_token_bucket_waits_once_the_minute_is_spent():
    b = Bucket(60)
    assert b.wait_time(1) == 0
    b.take(60)
    assert 0.9 < b.wait_time(1) <= 1.0


def test_secrets_redacts_whole_keys_fragments_and_auth_headers():
    s = Secrets("sk-abcdefgh12345678ijklmnop")
    text = s.redact("key sk-abcdefgh12345678ijklmnop, shown as sk-abcde...ijklmnop; Authorization: Bearer xyz")
    assert "abcdefgh" not in text and "ijklmnop" not in text and "xyz" not in text


def test_parsers():
    assert extract_json('Sure!\n```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('The answer is {"a": [1, 2]} as asked.') == {"a": [1, 2]}
    with pytest.raises(ParseError):
        extract_json("no braces here")
    assert JsonParser(schema={"a": "int"}).parse('{"a": "3"}', "response") == {"a": 3}
    assert RegexParser(pattern=r"Answer: (\w+)").parse("Answer: yes", "response") == {"response": "yes"}
    with pytest.raises(ParseError):
        RegexParser(pattern=r"Answer: (\w+)").parse("no", "response")


def test_completion_style_uses_the_legacy_completions_endpoint(server, write, catalog):
    path = write("r.yaml", recipe(server.url, ["once upon"], step="    style: completion"))
    api.build(path, catalog=catalog)
    assert api.read("out", catalog=catalog)["response"].to_list() == ["ECHO: ONCE UPON"]
    assert server.count("POST", "/v1/completions") == 1
    assert llm_calls(catalog)["prompt"].to_list() == ["once upon"]
