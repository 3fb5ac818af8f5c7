"""Several processes on one catalog: reads during a build, and a build killed half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import spine_kinds  # noqa: F401  (test.slow)
from conftest import run_dataforge
from dataforge import api
from dataforge.catalog.store import Catalog

TESTS = Path(__file__).parent
# The real CLI in a subprocess, with the test-only step kinds registered.
CLI_WITH_TEST_KINDS = "import spine_kinds; from dataforge.cli import main; main()"


def spawn_build(recipe: Path, cat: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", CLI_WITH_TEST_KINDS, "build", str(recipe), "--catalog", str(cat),
                             "-q", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"build ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError("the build never reached its slow step")
        time.sleep(0.05)


def slow_recipe(write, tmp_path: Path, rows: int = 3) -> Path:
    write("data.jsonl", "".join(json.dumps({"instruction": f"task {i} — ünïcødé 🙂"}) + "\n" for i in range(rows)))
    return write("slow.yaml", f"""
        name: slow
        vars:
          secs: 30
        steps:
          - id: src
            type: source.jsonl
            path: data.jsonl
          - id: wait
            type: test.slow
            seconds: ${{secs}}
            marker: {tmp_path / 'started'}
          - id: copy
            type: test.upper
        outputs:
          slow_out: copy
          slow_src: src
        """)


@pytest.fixture
def kept(write, catalog) -> pl.DataFrame:
    """A catalog that already holds a dataset; returns its rows."""
    r = write("kept.yaml", """
        name: kept
        steps:
          - id: s
            type: source.inline
            rows: [{text: keep me}, {text: "and me 🙂"}]
        outputs:
          kept: s
        """)
    api.build(r, catalog=catalog)
    return api.read("kept", catalog=catalog)


def test_build_killed_half_way_then_rerun(write, catalog, tmp_path, kept):
    recipe = slow_recipe(write, tmp_path)
    proc = spawn_build(recipe, catalog)
    wait_for(tmp_path / "started", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    # The catalog opens, the earlier dataset is intact, nothing of the killed build was published.
    assert api.read("kept", catalog=catalog).equals(kept)
    assert set(api.datasets(catalog=catalog)["name"]) == {"kept"}
    builds, steps = api.history(catalog=catalog)
    killed = builds.filter(pl.col("recipe_name") == "slow").row(0, named=True)
    assert killed["status"] == "running"  # nobody has looked yet
    assert steps.filter(pl.col("build_id") == killed["build_id"])["step_id"].to_list() == ["src"]

    # The next build marks it killed and reuses the step that had finished.
    res = api.build(recipe, catalog=catalog, vars={"secs": 0})
    assert {s.step_id: s.status for s in res.steps} == {"src": "reused", "wait": "built", "copy": "built"}
    builds, _ = api.history(catalog=catalog)
    by_id = {r["build_id"]: r for r in builds.iter_rows(named=True)}
    assert by_id[killed["build_id"]]["status"] == "killed"
    assert "ended without finishing" in by_id[killed["build_id"]]["error"]
    assert by_id[res.build_id]["status"] == "ok"
    assert api.read("slow_out", catalog=catalog)["instruction"].str.starts_with("TASK").all()


def test_a_running_build_is_not_marked_killed(write, catalog, tmp_path, kept):
    recipe = slow_recipe(write, tmp_path)
    proc = spawn_build(recipe, catalog, "--var", "secs=4")
    try:
        wait_for(tmp_path / "started", proc)
        assert Catalog(catalog).mark_killed_builds() == []  # its process is alive
        builds, _ = api.history(catalog=catalog)
        assert builds.filter(pl.col("recipe_name") == "slow")["status"].to_list() == ["running"]
        res = api.build(write("other.yaml", "name: other\nsteps:\n  - id: s\n    type: source.inline\n"
                                            "    rows: [{a: 1}]\noutputs:\n  other: s\n"), catalog=catalog)
        assert res.status == "ok"  # another build on the same catalog meanwhile
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    builds, _ = api.history(catalog=catalog)
    assert builds.filter(pl.col("recipe_name") == "slow")["status"].to_list() == ["ok"]


def test_a_second_build_of_a_recipe_being_built_is_refused(write, catalog, tmp_path, kept):
    """Two builds of one recipe at once would both run its steps and pay for its LLM calls (the
    first has not logged them yet): the second stops at once, exit 2, and changes nothing."""
    recipe = slow_recipe(write, tmp_path)
    proc = spawn_build(recipe, catalog, "--var", "secs=4")
    try:
        wait_for(tmp_path / "started", proc)
        before = api.history(catalog=catalog)[0]
        second = spawn_build(recipe, catalog, "--var", "secs=0")
        _, second_err = second.communicate(timeout=60)
        assert second.returncode == 2, second_err
        assert f"recipe 'slow' is being built into this catalog right now (build {before['build_id'][0]}, " \
               f"pid {proc.pid}," in second_err and "wait for it to finish" in second_err
        assert api.history(catalog=catalog)[0].equals(before)  # no build recorded
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert api.read("kept", catalog=catalog).equals(kept)
    assert api.build(recipe, catalog=catalog, vars={"secs": 0}).status == "ok"  # once it is done


@pytest.mark.slow
def test_sql_while_a_build_writes_never_hangs(write, catalog, tmp_path, kept):
    recipe = slow_recipe(write, tmp_path, rows=100_000)
    t0 = time.monotonic()
    assert run_dataforge("sql", "select 1", "--catalog", catalog).returncode == 0
    startup = time.monotonic() - t0  # the same command with nobody else on the catalog
    proc = spawn_build(recipe, catalog, "--var", "secs=2")
    outcomes = []
    try:
        while proc.poll() is None or not outcomes:
            t0 = time.monotonic()
            res = run_dataforge("sql", "select count(*) as n from datasets", "--catalog", catalog,
                                "--format", "csv", timeout=60)
            outcomes.append((res.returncode, time.monotonic() - t0, res.stdout + res.stderr))
    finally:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    for code, seconds, output in outcomes:
        assert "Traceback" not in output
        assert seconds < startup + 15, output  # at most the 10 s lock wait (+ slack for a busy machine)
        if code != 0:
            assert code == 2 and "locked by another process" in output, output
        else:
            assert output.splitlines()[0] == "n" and int(output.splitlines()[1]) in (1, 2, 3)
    assert any(code == 0 for code, _, _ in outcomes)
    # intact afterwards
    assert api.read("kept", catalog=catalog).equals(kept)
    assert api.read("slow_out", catalog=catalog).height == 100_000
    builds, _ = api.history(catalog=catalog)
    assert set(builds["status"]) == {"ok"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_marks_the_build_interrupted_and_keeps_finished_steps(write, catalog, tmp_path, kept, sig):
    """Ctrl-C, and SIGTERM (`kill PID`, `timeout`, a cancelled CI job) alike: the build is closed as
    interrupted (not left `running` with its unlogged LLM answers lost, as SIGKILL leaves it)."""
    recipe = slow_recipe(write, tmp_path)
    proc = spawn_build(recipe, catalog)
    wait_for(tmp_path / "started", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "interrupted" in err and "Traceback" not in err
    builds, steps = api.history(catalog=catalog)
    last = builds.filter(pl.col("recipe_name") == "slow").row(0, named=True)
    assert last["status"] == "interrupted"
    # what stopped it (a `kill PID` was recorded as "interrupted by the user")
    assert last["error"] == ("terminated (SIGTERM)" if sig == signal.SIGTERM else "interrupted by the user")
    done = steps.filter(pl.col("build_id") == last["build_id"])
    assert dict(zip(done["step_id"], done["status"])) == {"src": "built", "wait": "interrupted"}
    assert api.read("kept", catalog=catalog).equals(kept)
    # it says how much was kept: the steps this build stored and their rows
    assert f"interrupted; completed work is kept: build {last['build_id']} stored 1 step(s) (3 rows)" in err


def test_a_crashed_build_whose_pid_is_now_another_process_does_not_lock_its_recipe(write, catalog, tmp_path):
    """A build killed with the machine (power loss, a reboot) stays 'running' with its pid, which after
    the restart (or once pids wrap around) is some other live process's: the next build of the recipe
    must not be refused for ever, told to stop that unrelated process; it marks the old one killed."""
    import datetime as dt
    import socket

    import duckdb

    recipe = write("r.yaml", "name: one\nsteps: [{id: a, type: source.inline, rows: [{t: a}]}]\noutputs: {a: a}\n")
    assert api.build(recipe, catalog=catalog).status == "ok"
    crashed = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).replace(tzinfo=None)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # started after the crash
    try:
        with duckdb.connect(str(catalog)) as con:
            con.execute("""insert into builds (build_id, recipe_name, recipe_path, recipe_sha256, started_at, status,
                                                dataforge_version, pid, host)
                           values ('20260101-000000-dead01', 'one', ?, 'x', ?, 'running', '0', ?, ?)""",
                        [str(recipe), crashed, other.pid, socket.gethostname()])
        result = run_dataforge("build", str(recipe), "--catalog", str(catalog), "-q")
        assert result.returncode == 0, result.stderr
        builds = api.history(catalog=catalog, recipe="one")[0]
        assert builds.filter(pl.col("build_id") == "20260101-000000-dead01")["status"].to_list() == ["killed"]
        assert other.poll() is None  # the unrelated process is left alone
    finally:
        other.kill()
        other.wait()


def test_sigterm_during_a_build_on_ray_closes_it_as_interrupted(write, catalog, tmp_path):
    """ray.init sets the driver's SIGTERM to sys.exit: a build on a local Ray cluster stopped by `kill PID`
    (a cancelled CI job) must still be closed as interrupted, exit 143, as on the local executor."""
    pytest.importorskip("ray")
    recipe = slow_recipe(write, tmp_path)
    proc = spawn_build(recipe, catalog, "--executor", "ray")
    wait_for(tmp_path / "started", proc, timeout=180)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "interrupted" in err and "Traceback" not in err
    last = api.history(catalog=catalog)[0].filter(pl.col("recipe_name") == "slow").row(0, named=True)
    assert last["status"] == "interrupted"
