"""Progress off a terminal: one line per task every few seconds with counts and rate; nothing when quiet."""

from __future__ import annotations

import io
import re

import spine_kinds  # noqa: F401  (test.counting)
from dataforge.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_interval_with_counts_and_rate():
    clock, buf = FakeClock(), io.StringIO()
    with Progress(stream=buf, clock=clock, interval=5, ticker=False) as p:
        assert p.mode == "lines"
        task = p.task("unique", total=50_000)
        for _ in range(12):
            clock.now += 1
            task.advance(1_000)
        task.advance(500, tokens="1,234")
        task.close()
    lines = buf.getvalue().splitlines()
    assert lines == [
        "  unique: 5,000 / 50,000 rows (10%), 1,000 rows/s, 5s",
        "  unique: 10,000 / 50,000 rows (20%), 1,000 rows/s, 10s",
        "  unique: 12,500 / 50,000 rows (25%), 1,042 rows/s, done in 12s  tokens=1,234",
    ]


def test_a_quick_task_prints_nothing_and_quiet_prints_nothing():
    clock, buf = FakeClock(), io.StringIO()
    with Progress(stream=buf, clock=clock, interval=5, ticker=False) as p:
        with p.task("fast", total=10) as t:
            clock.now += 1
            t.advance(10)
    assert buf.getvalue() == ""
    with Progress(quiet=True, stream=buf, clock=clock, interval=5, ticker=False) as p:
        t = p.task("slow", total=10)
        clock.now += 60
        t.advance(5)
        p.tick()
    assert buf.getvalue() == ""


def test_a_task_that_does_not_advance_still_shows_it_is_running():
    clock, buf = FakeClock(), io.StringIO()
    with Progress(stream=buf, clock=clock, interval=5, ticker=False) as p:
        p.task("answers", unit="requests")
        clock.now += 6
        p.tick()
        clock.now += 2
        p.tick()  # not due yet
    assert buf.getvalue().splitlines() == ["  answers: 0 requests, 0 requests/s, 6s",
                                           "  answers: 0 requests, 0 requests/s, done in 8s"]


def test_a_step_that_counts_its_own_work_gets_no_second_line():
    clock, buf = FakeClock(), io.StringIO()
    with Progress(stream=buf, clock=clock, interval=5, ticker=False) as p:
        with p.task("answers (generate.prompt)", total=20, fallback=True) as generic:
            clock.now += 6
            p.tick()  # the generic line shows the step is running
            with p.task("answers", total=20, unit="requests") as own:
                for _ in range(4):
                    clock.now += 3
                    own.advance(5)
                    p.tick()
            generic.advance(20)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "  answers (generate.prompt): 0 / 20 rows (0%), 0 rows/s, 6s"
    generic_lines = [ln for ln in lines if ln.startswith("  answers (generate.prompt)")]
    assert len(generic_lines) == 2 and "done in" in generic_lines[-1]  # its start and its end only
    assert [ln for ln in lines if ln.startswith("  answers: ")][-1].startswith(
        "  answers: 20 / 20 requests (100%)")


def test_descriptions_cannot_write_escape_sequences():
    clock, buf = FakeClock(), io.StringIO()
    with Progress(stream=buf, clock=clock, interval=1, ticker=False) as p:
        t = p.task("step\x1b[2J", total=2)
        clock.now += 2
        t.advance(1)
    assert "\x1b" not in buf.getvalue() and "step\\x1b[2J" in buf.getvalue()


def test_a_build_in_a_log_prints_progress_lines(write, catalog, cli, monkeypatch):
    monkeypatch.setenv("DATAFORGE_PROGRESS_SECONDS", "0.2")
    recipe = write("r.yaml", """
        name: counting
        steps:
          - id: rows
            type: source.inline
            rows: [{text: a}, {text: b}, {text: c}, {text: d}, {text: e}, {text: f}]
          - id: count
            type: test.counting
            blocks: 6
            pause: 0.15
        outputs: {counted: count}
    """)
    res = cli("build", recipe, "--catalog", catalog)
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("  count: ")]
    assert lines, res.output
    assert re.fullmatch(r"  count: \d / 6 rows \(\d+%\), [\d.]+ rows/s, \d+s", lines[0])
    assert re.fullmatch(r"  count: 6 / 6 rows \(100%\), [\d.]+ rows/s, done in \d+s", lines[-1])
    assert "count (test.counting)" not in res.output  # the step's own task replaces the generic one
    quiet = cli("build", recipe, "--catalog", catalog, "--force", "-q")
    assert quiet.exit_code == 0 and not [ln for ln in quiet.output.splitlines() if ln.startswith("  count: ")]
