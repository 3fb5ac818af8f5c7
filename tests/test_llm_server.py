"""The `openai` provider end to end: the real SDK against llama-cpp-python's server on the bundled SmolLM2,
directly and through a fault-injecting proxy; a build killed with SIGKILL resumes without paying twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from dataforge import api
from conftest import paid_calls
from llm_server import llama_server
from servers.fault_proxy import FaultPlan, FaultProxy

TOPICS = ["cats", "rain", "bread", "rivers", "stars", "chess", "tea", "snow", "maps", "bees", "salt", "glass",
          "clocks", "wolves", "paper", "iron", "moss", "kites", "ink", "sand"]


@pytest.fixture(scope="module")
def llama_url():
    with llama_server() as url:
        yield url


def recipe(base_url: str, rows: int, *, extra_llm: str = "  max_concurrency: 4") -> str:
    topics = [f"{TOPICS[i % len(TOPICS)]} {i}" for i in range(rows)]
    inline = "\n".join(f"      - {{topic: '{t}'}}" for t in topics)
    return f"""
name: server-test
seed: 3
llm:
  provider: openai
  model: smollm2
  base_url: {base_url}
  temperature: 0
  max_tokens: 6
  retry_backoff_s: 0.05
{extra_llm}
steps:
  - id: topics
    type: source.inline
    rows:
{inline}
  - id: answer
    type: generate.prompt
    prompt: "Name one colour of {{{{ topic }}}}."
outputs:
  answers: answer
"""


def calls(cat: Path, where: str = "true") -> pl.DataFrame:
    con = duckdb.connect(str(cat), read_only=True)
    try:
        return con.sql(f"select * from llm_calls where {where} order by created_at").pl()
    finally:
        con.close()


def test_faults_are_retried_and_visible_in_the_call_log(llama_url, write, catalog):
    plan = FaultPlan(rate_429=0.15, rate_500=0.15, rate_truncated=0.1, rate_stall=0.1, retry_after_s=0.1,
                     stall_s=5.0, max_faults_per_body=2, seed=7)
    with FaultProxy(llama_url.removesuffix("/v1"), plan) as proxy:
        llm = "  max_concurrency: 2\n  timeout_s: 4\n  max_retries: 6"
        path = write("r.yaml", recipe(proxy.url + "/v1", 16, extra_llm=llm))
        res = api.build(path, catalog=catalog, quiet=True)
    assert res.status == "ok"
    answers = api.read("answers", catalog=catalog)
    assert answers.height == 16, calls(catalog, "status = 'error'")["error"].to_list()
    assert all(t for t in answers["response"])
    log = calls(catalog)
    assert set(log["status"]) <= {"ok", "retry"}  # every fault was retried, none left a row behind
    retries = log.filter(pl.col("status") == "retry")

    def n(marker: str) -> int:
        return retries.filter(pl.col("error").str.contains(marker, literal=True)).height

    assert proxy.faults["429"] and n("HTTP 429") == proxy.faults["429"]
    assert proxy.faults["500"] and n("HTTP 500") == proxy.faults["500"]
    # a truncated answer that arrives late, or a slow answer from the busy server, times out instead
    assert proxy.faults["truncated"] and n("malformed response") >= 1
    assert proxy.faults["stall"] and n("timeout") >= 1
    assert retries.height == n("HTTP 429") + n("HTTP 500") + n("malformed response") + n("timeout")
    # bounded: retries per request stay within llm.max_retries
    assert retries.group_by("request_hash").len()["len"].max() <= 6
    assert log.filter(pl.col("status") == "ok")["request_hash"].n_unique() == 16

    # A rebuild answers everything from the log: no new call.
    res2 = api.build(path, catalog=catalog, force=True, quiet=True)
    new = calls(catalog, f"build_id = '{res2.build_id}'")
    assert set(new["status"]) == {"cached"} and new.height == 16
    assert api.read("answers", catalog=catalog).sort("id").equals(answers.sort("id"))


def _dataforge(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dataforge.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_sigkill_then_rerun_makes_only_the_missing_calls(llama_url, write, tmp_path):
    rows, kill_after = 12, 4
    path = write("r.yaml", recipe(llama_url, rows, extra_llm="  max_concurrency: 2"))
    cat = tmp_path / "killed.duckdb"
    proc = _dataforge("build", path, "--catalog", cat, "--quiet")
    deadline = time.monotonic() + 120
    while paid_calls(cat) < kill_after:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "build too slow"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    logged = paid_calls(cat)
    assert kill_after <= logged < rows

    rerun = _dataforge("build", path, "--catalog", cat, "--quiet")
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    last = calls(cat, "build_id = (select max(build_id) from builds)")
    assert last.filter(pl.col("status") == "ok").height == rows - logged  # exactly the missing ones
    assert last.filter(pl.col("status") == "cached").height == logged
    # nothing was paid twice over both builds
    ok = calls(cat, "status = 'ok'")
    assert ok["request_hash"].n_unique() == ok.height == rows

    fresh = tmp_path / "fresh.duckdb"
    assert api.build(path, catalog=fresh, quiet=True).status == "ok"
    resumed = api.read("answers", catalog=cat).sort("id")
    assert resumed.height == rows
    assert resumed.equals(api.read("answers", catalog=fresh).sort("id"))


def test_a_closed_port_is_a_connection_error_not_a_timeout(write, catalog):
    # The SDKs' aiohttp transport reports a refused connect as `ConnectTimeout`; the log said
    # "timeout: no answer in time" 5 ms after the call began.
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write("r.yaml", recipe(f"http://127.0.0.1:{port}/v1", 2, extra_llm="  max_retries: 1\n  timeout_s: 30"))
    with pytest.raises(Exception, match="every LLM call failed") as e:
        api.build(path, catalog=catalog, quiet=True)
    assert f"connection error: Cannot connect to host 127.0.0.1:{port}" in str(e.value)
    errors = calls(catalog)["error"].to_list()
    assert errors and all(x.startswith("connection error: ") for x in errors), errors
