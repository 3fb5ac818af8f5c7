"""The Ray executor: same datasets as the local executor, one catalog writer, faults survived, clear errors.

One local Ray (`ray.init(num_cpus=2)`) serves the in-process tests; the two-node test starts a
`ray.cluster_utils.Cluster` in a child process and builds through the CLI against its address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import run_dataforge
from servers.openai_batch import OpenAIBatchServer

from dataforge import api
from dataforge.catalog.query import run_select

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'dataforge[ray]')")

# One worker runs every Ray test (under pytest-xdist): they share one local Ray, and two would fight
# over the same two cores.
pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "DATAFORGE_TEST_OPENAI_KEY"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


class SlowServer(OpenAIBatchServer):
    """The loopback OpenAI server, each completion taking `latency_s`."""

    def __init__(self, latency_s: float = 0.0):
        super().__init__()
        self.latency_s = latency_s

    def completion(self, endpoint, body):
        if self.latency_s:
            time.sleep(self.latency_s)
        return super().completion(endpoint, body)

    def calls(self) -> int:
        with self.lock:
            return sum(1 for r in self.log if r.path.endswith("/completions"))


@pytest.fixture
def server(monkeypatch):
    with SlowServer() as s:
        monkeypatch.setenv(KEY_ENV, s.api_key)
        yield s


def prompt_recipe(url: str, n_rows: int, *, concurrency: int = 4, n: int = 1) -> str:
    rows = "\n".join(f"      - {{topic: 'topic {i} word'}}" for i in range(n_rows))
    return f"""
name: ray-prompt
seed: 3
llm:
  provider: openai
  model: echo-1
  base_url: {url}/v1
  api_key_env: {KEY_ENV}
  max_tokens: 4
  max_concurrency: {concurrency}
  retry_backoff_s: 0.01
steps:
  - id: src
    type: source.inline
    rows:
{rows}
  - id: tidy
    type: filter.heuristics
    column: topic
    min_words: 1
    dedup: none
  - id: gen
    type: generate.prompt
    prompt: "Say {{{{ topic }}}}"
    n: {n}
outputs:
  answers: gen
"""


def same_datasets(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        left, right = api.read(name, catalog=a), api.read(name, catalog=b)
        assert left.height > 0
        assert left.equals(right), f"dataset {name} differs between executors"
    fa = run_select(a, "select step_id, fingerprint, rows_out from steps where status = 'built' order by step_id")
    fb = run_select(b, "select step_id, fingerprint, rows_out from steps where status = 'built' order by step_id")
    assert fa.equals(fb)


class InFlight:
    """Wraps a server's completion to record the most requests it ever had in flight at once."""

    def __init__(self, server: SlowServer):
        self.now = self.peak = 0
        self.lock = threading.Lock()
        self.orig = server.completion
        server.completion = self

    def __call__(self, endpoint, body):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            return self.orig(endpoint, body)
        finally:
            with self.lock:
                self.now -= 1


def test_generate_prompt_on_ray_matches_local_limits_shared_and_a_rerun_pays_nothing(local_ray, server, write,
                                                                                   tmp_path):
    recipe = write("r.yaml", prompt_recipe(server.url, 16, concurrency=2, n=2))
    local, on_ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    api.build(recipe, catalog=local)
    paid = server.calls()
    assert paid == 32
    # max_concurrency 2 over 2 workers: 2 requests in flight at most (the limit is shared, not multiplied).
    server.latency_s = 0.05
    inflight = InFlight(server)
    res = api.build(recipe, catalog=on_ray, executor="ray")
    assert inflight.peak == 2
    server.latency_s = 0.0
    assert server.calls() == 2 * paid  # a fresh catalog pays once
    same_datasets(local, on_ray, ["answers"])
    ok = run_select(on_ray, "select count(*) n, count(distinct request_hash) d from llm_calls where status = 'ok'")
    assert ok["n"][0] == ok["d"][0] == 32  # every answer committed once, by the driver

    again = api.build(recipe, catalog=on_ray, executor="ray")
    assert {s.status for s in again.steps} == {"reused"}
    forced = api.build(recipe, catalog=on_ray, executor="ray", force=True)  # every step runs again on Ray ...
    assert server.calls() == 2 * paid  # ... and takes every answer from the call log, looked up on the driver
    assert forced.datasets["answers"] == res.datasets["answers"]  # same rows: no new version
    from dataforge.executors.ray_cluster import SINK_PREFIX

    sinks = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(SINK_PREFIX)]
    assert len(sinks) == 1  # one call-sink actor serves the driver's successive builds
    # The build moves between executors: a local build reuses what Ray built.
    assert {s.status for s in api.build(recipe, catalog=on_ray).steps} == {"reused"}


def test_quickstart_on_ray_matches_local(local_ray, tmp_path):
    text = (ROOT / "recipes/quickstart.yaml").read_text()
    text = text.replace("path: data/seed_tasks.jsonl", f"path: {ROOT}/recipes/data/seed_tasks.jsonl\n    limit: 8")
    # The bootstrap keeps its 160 tokens: a list cut short by max_tokens is rejected whole (`truncated`).
    text = text.replace("max_tokens: 48", "max_tokens: 6")
    # One bootstrap call and no classification call (its few-shot prompt is ~600 tokens of slow prompt
    # evaluation on this CPU): Self-Instruct runs on the driver under both executors alike.
    text = text.replace("target: 4", "target: 1").replace("prompts_per_round: 2", "prompts_per_round: 1\n    identify: false")
    assert "max_tokens: 6\n" in text and "target: 1\n" in text and "identify: false\n" in text
    recipe = tmp_path / "quickstart.yaml"
    recipe.write_text(text)
    local, on_ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    api.build(recipe, catalog=local)
    api.build(recipe, catalog=on_ray, executor="ray")
    same_datasets(local, on_ray, ["seed_tasks", "model_answers", "new_tasks"])
    assert run_select(on_ray, "select count(*) n from llm_calls where status = 'ok'")["n"][0] >= 1


def test_symbol_tuning_on_ray_matches_local(local_ray, tmp_path):
    recipe = ROOT / "recipes/symbol_tuning.yaml"
    local, on_ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    api.build(recipe, catalog=local, vars={"prompts_per_task": 40})
    api.build(recipe, catalog=on_ray, vars={"prompts_per_task": 40}, executor="ray")
    same_datasets(local, on_ray, ["symbol_tuning_train", "symbol_eval_symbols", "symbol_eval_labels_instruction",
                                  "symbol_eval_flipped"])


def test_row_wise_template_on_ray_matches_local_over_many_slices(local_ray, write, tmp_path, monkeypatch):
    from dataforge.executors import ray_cluster

    monkeypatch.setattr(ray_cluster, "ROWS_PER_SLICE", 7)  # 100 rows -> 15 slices, uneven
    rows = "\n".join(f"              - {{text: 'review number {i}', label: {i % 2}}}" for i in range(100))
    recipe = write("t.yaml", f"""
        name: ray-template
        seed: 11
        steps:
          - id: src
            type: source.inline
            rows:
{rows}
          - id: tpl
            type: transform.template
            label_names: {{src: {{0: negative, 1: positive}}}}
            templates:
              src:
                - {{id: a, prompt: "Review: {{{{ text }}}}", target: "{{{{ answer }}}}"}}
                - {{id: b, prompt: "{{{{ text }}}} - sentiment?", target: "{{{{ answer }}}}"}}
        outputs:
          prompts: tpl
        """)
    local, on_ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    api.build(recipe, catalog=local)
    api.build(recipe, catalog=on_ray, executor="ray")
    same_datasets(local, on_ray, ["prompts"])
    assert api.read("prompts", catalog=local)["template_id"].n_unique() == 2


def test_a_killed_worker_is_survived_nothing_lost_or_paid_twice(local_ray, server, write, tmp_path):
    from dataforge.executors.ray_cluster import SINK_PREFIX

    server.latency_s = 0.04
    recipe = write("r.yaml", prompt_recipe(server.url, 40, concurrency=2))
    local, on_ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    box: dict = {}
    th = threading.Thread(target=lambda: box.update(res=api.build(recipe, catalog=on_ray, executor="ray")))
    th.start()
    killed = None
    deadline = time.monotonic() + 30
    while killed is None and time.monotonic() < deadline and th.is_alive():
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith(SINK_PREFIX)]
        if names and server.calls() >= 8:
            step, pids = ray.get(ray.get_actor(names[0]).pids.remote())
            if step == "gen" and pids:
                killed = pids[min(pids)]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    th.join(60)
    assert killed is not None, "the build ended before a worker could be killed"
    assert box["res"].status == "ok"
    paid = server.calls()
    server.latency_s = 0.0
    api.build(recipe, catalog=local)
    same_datasets(local, on_ray, ["answers"])  # complete, unduplicated, in order
    ok = run_select(on_ray, "select count(*) n, count(distinct request_hash) d from llm_calls where status = 'ok'")
    assert ok["n"][0] == ok["d"][0] == 40  # no answer that reached the driver was paid for twice
    assert 40 <= paid <= 40 + 20  # at most the killed slice's share is sent again



def test_a_slice_whose_worker_dies_on_every_try_stops_the_build_with_a_located_message(local_ray, server, write,
                                                                                       tmp_path, cli):
    from dataforge.executors.ray_cluster import SINK_PREFIX, TASK_RETRIES

    server.latency_s = 0.2
    recipe = write("r.yaml", prompt_recipe(server.url, 40, concurrency=2))
    on_ray = tmp_path / "ray.duckdb"
    killed: set[int] = set()
    building = threading.Event()
    building.set()

    def killer() -> None:  # kill the worker of slice 1 every time it is tried
        deadline = time.monotonic() + 90
        while building.is_set() and time.monotonic() < deadline:
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith(SINK_PREFIX)]
            if names:
                step, pids = ray.get(ray.get_actor(names[0]).pids.remote())
                if step == "gen" and pids.get(0) and pids[0] not in killed:
                    killed.add(pids[0])
                    os.kill(pids[0], signal.SIGKILL)
            time.sleep(0.05)

    th = threading.Thread(target=killer)
    th.start()
    try:
        res = cli("build", recipe, "--catalog", on_ray, "--executor", "ray", "--quiet")
    finally:
        building.clear()
        th.join(30)
    assert len(killed) == TASK_RETRIES + 1
    assert res.exit_code == 2, res.output
    assert "internal error" not in res.output
    assert "r.yaml:" in res.output
    assert "Ray could not run slice 1 of 2 (input rows 0-19): its worker died on every retry" in res.output
    assert "WorkerCrashedError" in res.output
    assert "building again goes on from them" in res.output
    kept = run_select(on_ray, "select count(*) n from llm_calls where status = 'ok'")["n"][0]
    assert kept > 0
    paid = server.calls()
    server.latency_s = 0.0
    assert cli("build", recipe, "--catalog", on_ray, "--executor", "ray", "--quiet").exit_code == 0
    assert server.calls() - paid == 40 - kept  # the answers kept before the stop are not paid for again

def test_a_retried_slice_counts_the_calls_of_its_killed_attempt_against_the_budget(local_ray, server, write,
                                                                                    tmp_path):
    # Each of the 2 slices may make 8 of the 16 calls. A slice whose worker is killed after some of its answers
    # reached the catalog is retried; the retry takes those answers from the sink and makes only the rest of
    # its share, so the build stays within llm.max_calls.
    from dataforge.errors import BudgetExceeded
    from dataforge.executors.ray_cluster import SINK_PREFIX

    server.latency_s = 0.2
    text = prompt_recipe(server.url, 40, concurrency=2).replace("  retry_backoff_s: 0.01\n",
                                                                "  retry_backoff_s: 0.01\n  max_calls: 16\n")
    recipe = write("r.yaml", text)
    on_ray = tmp_path / "ray.duckdb"
    box: dict = {}

    def build() -> None:
        try:
            api.build(recipe, catalog=on_ray, executor="ray")
        except BudgetExceeded as e:
            box["stop"] = e

    th = threading.Thread(target=build)
    th.start()
    killed = None
    deadline = time.monotonic() + 30
    ok = "select count(*) n, count(distinct request_hash) d from llm_calls where status = 'ok'"
    while killed is None and time.monotonic() < deadline and th.is_alive():
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith(SINK_PREFIX)]
        if names and on_ray.exists() and run_select(on_ray, ok)["n"][0] >= 4:
            step, pids = ray.get(ray.get_actor(names[0]).pids.remote())
            if step == "gen" and 0 in pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    th.join(60)
    assert killed is not None, "the build ended before a worker could be killed"
    assert "stop" in box and "llm.max_calls=16 reached (16 calls in this build)" in str(box["stop"])
    assert run_select(on_ray, ok).rows() == [(16, 16)]


def test_a_budget_stop_on_ray_keeps_every_answer_it_paid_for(local_ray, server, write, tmp_path):
    from dataforge.errors import BudgetExceeded

    text = prompt_recipe(server.url, 20, concurrency=2).replace("  retry_backoff_s: 0.01\n",
                                                                "  retry_backoff_s: 0.01\n  max_calls: 6\n")
    assert "max_calls: 6" in text
    recipe = write("r.yaml", text)
    on_ray = tmp_path / "ray.duckdb"
    lines: list[str] = []

    def summaries() -> list[str]:
        return [line.strip() for line in lines if line.strip().startswith("gen: ")]

    with pytest.raises(BudgetExceeded) as stop:
        api.build(recipe, catalog=on_ray, executor="ray", log=lines.append)
    # The build's numbers, once: each of the 2 slices makes its 3 calls, the other slice is not cut short.
    assert server.calls() == 6
    assert str(stop.value).startswith("llm.max_calls=6 reached (6 calls in this build); 14 of 20 requests were "
                                      "not sent.")
    assert summaries() == ["gen: 20 requests, 0 from the call log, 6 called (6 ok, 0 failed, 0 retries, "
                           "14 not sent), 48 tokens, $0.0000"]
    # "Every answer already paid for is kept in the call log": the slices' answers reach the catalog.
    ok = "select count(*) n, count(distinct request_hash) d from llm_calls where status = 'ok'"
    assert run_select(on_ray, ok)["n"][0] == 6
    lines.clear()
    with pytest.raises(BudgetExceeded) as stop:  # the next build goes on from there, paying for nothing twice
        api.build(recipe, catalog=on_ray, executor="ray", log=lines.append)
    assert server.calls() == 12 and "(6 calls in this build); 8 of 20 requests were not sent" in str(stop.value)
    assert run_select(on_ray, ok)["n"][0] == run_select(on_ray, ok)["d"][0] == 12
    lines.clear()
    write("r.yaml", text.replace("  max_calls: 6\n", ""))
    api.build(recipe, catalog=on_ray, executor="ray", log=lines.append)
    assert server.calls() == 20
    assert summaries() == ["gen: 20 requests, 12 from the call log, 8 called (8 ok, 0 failed, 0 retries), "
                           "64 tokens, $0.0000"]


def test_unreachable_cluster_and_missing_ray_exit_2(write, cli, catalog, monkeypatch):
    recipe = write("r.yaml", """
        name: tiny
        steps:
          - id: src
            type: source.inline
            rows: [{a: 1}]
        outputs: {t: src}
        """)
    t0 = time.monotonic()
    r = run_dataforge("build", recipe, "--catalog", catalog, "--executor", "ray", "--ray-address", "127.0.0.1:9",
                      timeout=60)
    assert r.returncode == 2, r.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in r.stderr
    assert time.monotonic() - t0 < 20
    assert not catalog.exists() or "tiny" not in api.datasets(catalog=catalog)["name"].to_list()

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    r = cli("build", recipe, "--catalog", catalog, "--executor", "ray")
    assert r.exit_code == 2
    assert "pip install 'dataforge[ray]'" in r.output
    monkeypatch.setenv("DATAFORGE_EXECUTOR", "ray")
    r = cli("build", recipe, "--catalog", catalog)
    assert r.exit_code == 2 and "pip install 'dataforge[ray]'" in r.output
    monkeypatch.setenv("DATAFORGE_EXECUTOR", "spark")
    r = cli("build", recipe, "--catalog", catalog)
    assert r.exit_code == 2 and "unknown executor" in r.output
    monkeypatch.delenv("DATAFORGE_EXECUTOR")
    write("r.yaml", recipe.read_text().replace("name: tiny", "name: tiny\nexecutor: ray"))
    r = cli("build", recipe, "--catalog", catalog)
    assert r.exit_code == 2 and "pip install 'dataforge[ray]'" in r.output


CLUSTER_SCRIPT = """
import sys, time
from ray.cluster_utils import Cluster
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
c.add_node(num_cpus=1)
c.wait_for_nodes()
print(c.address, flush=True)
sys.stdin.read()  # until the test closes stdin
c.shutdown()
"""


def test_two_node_cluster_cli_build_matches_local_while_sql_reads(server, write, cli, tmp_path):
    server.latency_s = 0.2
    recipe = write("r.yaml", prompt_recipe(server.url, 30, concurrency=2))
    local, on_ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    head = subprocess.Popen([sys.executable, "-c", CLUSTER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    try:
        address = head.stdout.readline().strip()
        assert address, "the two-node cluster did not start"
        build = subprocess.Popen([sys.executable, "-m", "dataforge.cli", "build", str(recipe), "--catalog",
                                  str(on_ray), "--executor", "ray", "--ray-address", address, "-q"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # `dataforge sql` from this process while the build's process (the one writer) commits answers.
        seen: list[int] = []
        while build.poll() is None and not any(0 < n < 30 for n in seen):
            if on_ray.exists():
                r = cli("sql", "select count(*) as n from llm_calls where status = 'ok'", "--catalog", on_ray,
                        "--format", "csv")
                assert r.exit_code == 0, r.output
                seen.append(int(r.output.split()[-1]))
            time.sleep(0.1)
        out, errs = build.communicate(timeout=120)
        assert build.returncode == 0, errs
    finally:
        head.stdin.close()
        head.wait(60)
    assert any(0 < n < 30 for n in seen), f"no answers seen committed while the build ran: {seen}"
    server.latency_s = 0.0
    api.build(recipe, catalog=local)
    same_datasets(local, on_ray, ["answers"])
