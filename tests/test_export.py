"""`dataforge export`: rates with caps, manifest, formats, split, dedup, determinism, errors."""

from __future__ import annotations

import hashlib
import json
import textwrap
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge import api
from dataforge.export.rates import allocate

SIZES = {"alpha": 50, "beta": 200, "gamma": 1000}


def _rows(name: str, n: int) -> list[dict]:
    return [{"task": f"{name}_{i % 4}", "text": f"{name} sentence number {i}", "label": ["yes", "no"][i % 2]}
            for i in range(n)]


@pytest.fixture(scope="module")
def cat(tmp_path_factory) -> Path:
    """A catalog with three classification datasets of 50, 200 and 1,000 rows."""
    root = tmp_path_factory.mktemp("export_cat")
    steps = [{"id": n, "type": "source.inline", "rows": _rows(n, k)} for n, k in SIZES.items()]
    # Two prompt/completion datasets that overlap (case and spacing differ) for the dedup test.
    steps.append({"id": "pc_a", "type": "source.inline",
                  "rows": [{"prompt": p, "completion": "a"} for p in ["Hello world", "Unique A", "Same  thing"]]})
    steps.append({"id": "pc_b", "type": "source.inline",
                  "rows": [{"prompt": p, "completion": "b"} for p in ["hello   WORLD ", "Unique B", "same thing",
                                                                        "Unique B"]]})
    recipe = root / "data.yaml"
    recipe.write_text(yaml.safe_dump({"name": "export-data", "seed": 1, "steps": steps,
                                      "outputs": {s["id"]: s["id"] for s in steps}}), encoding="utf-8")
    path = root / "cat.duckdb"
    api.build(recipe, catalog=path)
    return path


def _mixture(write, text: str, name: str = "mix.yaml") -> Path:
    base = textwrap.dedent("""\
        name: test-mix
        seed: 7
        template:
          templates:
            - {id: classify, prompt: "Classify: {{ text }}", target: "{{ label }}"}
        keep_columns: [task]
        """)
    return write(name, base + textwrap.dedent(text))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _per_source(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in sorted(out.glob("*.jsonl")):
        for r in _read_jsonl(f):
            counts[r["source"]] = counts.get(r["source"], 0) + 1
    return counts


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("config, expected", [
    # m = (50, 100, 100): all, capped.
    ("cap: 100\n", {"alpha": 50, "beta": 100, "gamma": 100}),
    # quotas 120 * (50, 100, 100) / 250 = (24, 48, 48).
    ("cap: 100\ntotal: 120\n", {"alpha": 24, "beta": 48, "gamma": 48}),
    # no cap: quotas 125 * (50, 200, 1000) / 1250 = (5, 20, 100).
    ("total: 125\n", {"alpha": 5, "beta": 20, "gamma": 100}),
    # quotas 101 * (50, 100, 100) / 250 = (20.2, 40.4, 40.4): floors 100, the spare row goes to
    # the largest remainder, tie between beta and gamma -> the earlier source (beta).
    ("cap: 100\ntotal: 101\n", {"alpha": 20, "beta": 41, "gamma": 40}),
    # per-source cap overrides the default; no total.
    ("sources_override: true\n", {"alpha": 50, "beta": 200, "gamma": 10}),
])
def test_counts_per_source_match_examples_proportional_formula(cat, write, tmp_path, config, expected):
    if "sources_override" in config:
        text = "sources:\n  - dataset: alpha\n  - dataset: beta\n  - dataset: gamma\n    cap: 10\n"
    else:
        text = config + "sources:\n  - dataset: alpha\n  - dataset: beta\n  - dataset: gamma\n"
    res = api.export(_mixture(write, text), out=tmp_path / "out", format="jsonl", catalog=cat)
    assert {s.dataset: s.selected for s in res.manifest.sources} == expected
    assert _per_source(tmp_path / "out") == expected


def test_weights_pin_sources_at_their_cap_and_redistribute(cat, write, tmp_path):
    # m = (50, 100, 100), weights (1, 3, 1): mass (50, 300, 100), total 200.
    # beta's quota 200*300/450 = 133.3 >= 100 -> pinned at 100; 100 rows left over alpha and gamma
    # with mass 50:100 -> quotas 33.3, 66.7 -> floors 33, 66, spare row to gamma (remainder .67).
    text = "cap: 100\ntotal: 200\nsources:\n  - dataset: alpha\n  - dataset: beta\n    weight: 3\n  - dataset: gamma\n"
    res = api.export(_mixture(write, text), out=tmp_path / "out", format="jsonl", catalog=cat)
    assert _per_source(tmp_path / "out") == {"alpha": 33, "beta": 100, "gamma": 67}
    rates = {s.dataset: Fraction(s.rate_exact) for s in res.manifest.sources}
    assert rates == {"alpha": Fraction(1, 9), "beta": Fraction(2, 3), "gamma": Fraction(2, 9)}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.one_of(st.none(), st.integers(1, 3000)),
                          st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])), min_size=1, max_size=8),
       st.floats(0, 1))
def test_allocation_properties(sources, share):
    sizes, caps, weights = map(list, zip(*sources))
    capped = [n if c is None else min(n, c) for n, c in zip(sizes, caps)]
    total = int(share * sum(capped))
    alloc = allocate(sizes, caps, weights, total)
    assert alloc.capped == capped
    assert sum(alloc.counts) == total
    assert all(0 <= c <= m for c, m in zip(alloc.counts, capped))
    # Proportional up to caps, within one row: no source j could hand a row to a source i that
    # still has rows to give and end up closer to the rates, i.e. (c_j - 1)/r_j < (c_i + 1)/r_i.
    rates = [Fraction(w) * m for w, m in zip(weights, capped)]
    for i, (ci, mi) in enumerate(zip(alloc.counts, capped)):
        if ci < mi:
            for j, cj in enumerate(alloc.counts):
                if cj >= 1:
                    assert (cj - 1) / rates[j] < (ci + 1) / rates[i]
    # Equal weights, no total: every source gives exactly its capped size.
    assert allocate(sizes, caps).counts == capped


def test_manifest_hashes_match_files_and_catalog_is_untouched(cat, write, tmp_path):
    before = _sha(cat)
    mix = _mixture(write, "cap: 100\nsplit:\n  validation_fraction: 0.25\n  group_column: task\n"
                          "sources:\n  - dataset: alpha\n  - dataset: gamma\n")
    for fmt in ("jsonl", "parquet", "hf"):
        out = tmp_path / fmt
        manifest = api.export(mix, out=out, format=fmt, catalog=cat).manifest
        assert manifest.model_dump(mode="json") == json.loads((out / "manifest.json").read_text())
        assert manifest.manifest_version == 1
        listed = {f.path for f in manifest.files}
        on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
        assert listed == on_disk and listed
        for f in manifest.files:
            assert _sha(out / f.path) == f.sha256
            assert (out / f.path).stat().st_size == f.bytes
        srcs = {s.dataset: s for s in manifest.sources}
        assert srcs["gamma"].cap == 100 and srcs["gamma"].rows == 1000
        assert srcs["alpha"].version == 1 and len(srcs["alpha"].fingerprint) == 64
        assert manifest.seed == 7
    assert _sha(cat) == before


def test_hf_format_round_trips_through_load_from_disk(cat, write, tmp_path):
    import datasets

    mix = _mixture(write, "cap: 40\nsplit:\n  validation_fraction: 0.3\n  group_column: task\n"
                          "sources:\n  - dataset: alpha\n  - dataset: beta\n")
    api.export(mix, out=tmp_path / "j", format="jsonl", catalog=cat)
    manifest = api.export(mix, out=tmp_path / "h", format="hf", catalog=cat).manifest
    dd = datasets.load_from_disk(str(tmp_path / "h"))
    assert set(dd) == {"train", "validation"}
    for split in ("train", "validation"):
        assert dd[split].num_rows == manifest.rows[split] > 0
        assert dd[split]["prompt"] == [r["prompt"] for r in _read_jsonl(tmp_path / "j" / f"{split}.jsonl")]
    parquet = api.export(mix, out=tmp_path / "p", format="parquet", catalog=cat).manifest
    assert pl.read_parquet(tmp_path / "p" / "train.parquet")["prompt"].to_list() == dd["train"]["prompt"]
    assert parquet.rows == manifest.rows


def test_jsonl_has_prompt_completion_and_messages_in_chat_format(cat, write, tmp_path):
    text = api.export(_mixture(write, "total: 10\nsources:\n  - dataset: alpha\n"), out=tmp_path / "t",
                      catalog=cat)
    row = _read_jsonl(tmp_path / "t" / "train.jsonl")[0]
    assert row["prompt"].startswith("Classify: alpha sentence") and row["completion"] in ("yes", "no")
    assert "messages" not in row and text.manifest.rows == {"train": 10}

    chat = _mixture(write, "total: 10\nstyle: chat\nsystem_prompt: Answer yes or no.\n"
                           "sources:\n  - dataset: alpha\n", name="chat.yaml")
    api.export(chat, out=tmp_path / "c", catalog=cat)
    for row in _read_jsonl(tmp_path / "c" / "train.jsonl"):
        assert row["messages"] == [{"role": "system", "content": "Answer yes or no."},
                                   {"role": "user", "content": row["prompt"]},
                                   {"role": "assistant", "content": row["completion"]}]


def test_group_split_keeps_each_group_on_one_side(cat, write, tmp_path):
    mix = _mixture(write, "cap: 200\nsplit:\n  validation_fraction: 0.2\n  group_column: task\n"
                          "sources:\n  - dataset: alpha\n  - dataset: beta\n  - dataset: gamma\n")
    res = api.export(mix, out=tmp_path / "o", catalog=cat)
    train = {r["task"] for r in _read_jsonl(tmp_path / "o" / "train.jsonl")}
    val = {r["task"] for r in _read_jsonl(tmp_path / "o" / "validation.jsonl")}
    assert train and val and not train & val
    assert train | val == {f"{n}_{k}" for n in SIZES for k in range(4)}
    assert sum(s.train + s.validation for s in res.manifest.sources) == 50 + 200 + 200
    assert 0 < res.manifest.rows["validation"] <= round(0.2 * 450)  # groups are added only while they fit


def test_dedup_across_datasets_keeps_first_source_and_counts_drops(cat, write, tmp_path):
    mix = write("dedup.yaml", """\
        name: dedup-mix
        dedup:
          column: prompt
        sources:
          - dataset: pc_a
          - dataset: pc_b
        """)
    res = api.export(mix, out=tmp_path / "o", catalog=cat)
    rows = _read_jsonl(tmp_path / "o" / "train.jsonl")
    assert sorted((r["source"], r["prompt"]) for r in rows) == [
        ("pc_a", "Hello world"), ("pc_a", "Same  thing"), ("pc_a", "Unique A"), ("pc_b", "Unique B")]
    srcs = {s.dataset: s for s in res.manifest.sources}
    assert (srcs["pc_a"].dedup_dropped, srcs["pc_b"].dedup_dropped) == (0, 3)
    assert srcs["pc_b"].after_dedup == 1


def test_same_seed_gives_byte_identical_files(cat, write, tmp_path):
    body = "cap: 100\ntotal: 150\nsplit:\n  validation_fraction: 0.2\nsources:\n  - dataset: beta\n  - dataset: gamma\n"
    mix = _mixture(write, body)
    for fmt in ("jsonl", "parquet", "hf"):
        api.export(mix, out=tmp_path / f"{fmt}1", format=fmt, catalog=cat)
        api.export(mix, out=tmp_path / f"{fmt}2", format=fmt, catalog=cat)
        files = sorted(p.relative_to(tmp_path / f"{fmt}1") for p in (tmp_path / f"{fmt}1").rglob("*") if p.is_file())
        assert files
        for f in files:
            assert (tmp_path / f"{fmt}1" / f).read_bytes() == (tmp_path / f"{fmt}2" / f).read_bytes(), f
    other = write("mix_seed.yaml", _mixture(write, body).read_text().replace("seed: 7", "seed: 8"))
    api.export(other, out=tmp_path / "seed8", catalog=cat)
    assert (tmp_path / "seed8" / "train.jsonl").read_bytes() != (tmp_path / "jsonl1" / "train.jsonl").read_bytes()


def test_bad_mixture_reports_file_line_col_exits_2_and_keeps_earlier_export(cat, write, tmp_path, cli):
    good = _mixture(write, "total: 10\nsources:\n  - dataset: alpha\n")
    out = tmp_path / "out"
    assert cli("export", good, "--out", out, "--catalog", cat).exit_code == 0
    before = {p.name: _sha(p) for p in out.iterdir()}

    bad = write("bad.yaml", """\
        name: bad
        cap: -3
        sources:
          - dataset: alpha
            weight: 1
            colour: red
        """)
    res = cli("export", bad, "--out", out, "--catalog", cat)
    assert res.exit_code == 2
    assert f"{bad}:2:6: cap: Input should be greater than or equal to 1" in res.output
    assert f"{bad}:6:13: sources[0].colour: unknown field" in res.output
    missing = write("missing.yaml", "name: m\nsources:\n  - dataset: alpha\n  - dataset: nope\n")
    res = cli("export", missing, "--out", out, "--catalog", cat)
    assert res.exit_code == 2 and f"{missing}:4:14: sources[1].dataset: no dataset 'nope'" in res.output
    too_many = _mixture(write, "total: 51\nsources:\n  - dataset: alpha\n", name="many.yaml")
    res = cli("export", too_many, "--out", out, "--catalog", cat)
    assert res.exit_code == 2 and "total: total 51 exceeds the 50 rows available after caps" in res.output
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging dirs left


def test_refuses_to_replace_a_directory_that_is_not_an_export(cat, write, tmp_path, cli):
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    res = cli("export", _mixture(write, "total: 5\nsources:\n  - dataset: alpha\n"), "--out", keep, "--catalog", cat)
    assert res.exit_code == 2 and "refusing to replace" in res.output
    assert (keep / "notes.txt").read_text() == "mine"


def test_an_out_that_cannot_be_written_is_a_user_error(cat, write, tmp_path, cli):
    # A file where a folder should be (tests run as root, so a read-only folder would not stop them).
    (tmp_path / "afile").write_text("mine")
    res = cli("export", _mixture(write, "total: 5\nsources:\n  - dataset: alpha\n"), "--out",
              tmp_path / "afile" / "out", "--catalog", cat)
    assert res.exit_code == 2 and "cannot write the export there" in res.output
    assert "afile" in res.output and "internal error" not in res.output
    assert (tmp_path / "afile").read_text() == "mine"


def test_template_column_errors_point_at_the_template(cat, write, tmp_path):
    from dataforge.errors import UserError

    mix = write("t.yaml", """\
        name: t
        template:
          templates:
            - {id: q, prompt: "{{ question }}"}
        sources:
          - dataset: alpha
        """)
    with pytest.raises(UserError) as e:
        api.export(mix, out=tmp_path / "o", catalog=cat)
    assert "t.yaml:3:3: template: dataset 'alpha' lacks column(s) 'question'" in e.value.render()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=12)), st.integers(-10**12, 10**12)),
                min_size=1, max_size=20),
       st.sampled_from(["Q: {{ q }}\nA:", "{{ q }}{{ n }} {{ q }}\n", "plain text only", "{{ n }}",
                        "{{ q | upper }} ({{ n + 1 }})", "{% if n > 0 %}{{ q }}{% else %}neg{% endif %}"]))
def test_vectorised_templates_render_exactly_like_jinja(rows, source):
    from dataforge.jinja import compile_template, render_column

    df = pl.DataFrame({"q": [q for q, _ in rows], "n": [n for _, n in rows]}, schema={"q": pl.Utf8, "n": pl.Int64})
    if "upper" in source:
        df = df.with_columns(pl.col("q").fill_null(""))
    expected = [compile_template(source).render(r) for r in df.iter_rows(named=True)]
    assert render_column(df, source).to_list() == expected


def test_export_templating_draws_one_template_per_row_like_transform_template(cat, write, tmp_path):
    mix = write("flan.yaml", """\
        name: flan-style
        seed: 3
        template:
          options: true
          templates:
            - {id: plain, prompt: "A: {{ text }}"}
            - {id: opts, prompt: "B: {{ text }}\\n{{ options }}", target: "{{ answer }}!"}
        keep_columns: [template_id, label]
        sources:
          - dataset: beta
        """)
    api.export(mix, out=tmp_path / "o", catalog=cat)
    rows = _read_jsonl(tmp_path / "o" / "train.jsonl")
    assert {r["template_id"] for r in rows} == {"plain", "opts"}
    for r in rows:
        if r["template_id"] == "plain":
            assert r["prompt"].startswith("A: beta sentence") and r["completion"] == r["label"]
        else:
            assert r["prompt"].endswith("OPTIONS:\n- no\n- yes") and r["completion"] == r["label"] + "!"


def test_example_mixtures_export_the_example_recipes(tmp_path):
    import datasets

    repo = Path(__file__).resolve().parents[1]
    cat = tmp_path / "cat.duckdb"
    api.build(repo / "recipes" / "symbol_tuning.yaml", catalog=cat)
    api.build(repo / "recipes" / "flan_mixture.yaml", catalog=cat)
    mixtures = sorted((repo / "recipes" / "mixtures").glob("*.yaml"))
    assert {m.stem for m in mixtures} >= {"flan", "symbol_tuning", "symbol_tuning_flan"}
    for mix in mixtures:
        manifest = api.export(mix, out=tmp_path / mix.stem, format="hf", catalog=cat).manifest
        dd = datasets.load_from_disk(str(tmp_path / mix.stem))
        assert {k: dd[k].num_rows for k in dd} == manifest.rows and manifest.rows["train"] > 0
        assert all(p and c for p, c in zip(dd["train"]["prompt"], dd["train"]["completion"]))


def test_a_failure_while_writing_leaves_the_earlier_export_intact(cat, write, tmp_path, monkeypatch):
    from dataforge.export import run

    mix = _mixture(write, "total: 10\nsplit:\n  validation_fraction: 0.3\nsources:\n  - dataset: alpha\n")
    out = tmp_path / "out"
    api.export(mix, out=out, catalog=cat)
    before = {p.name: _sha(p) for p in out.iterdir()}
    real = run.write_split

    def failing(df, where, split, fmt):
        real(df, where, split, fmt)
        if split == "validation":
            raise OSError("disk full")

    monkeypatch.setattr(run, "write_split", failing)
    with pytest.raises(OSError):
        api.export(mix.with_name("mix.yaml"), out=out, format="parquet", catalog=cat)
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_docs_describe_every_mixture_field():
    from dataforge.export.mixture import DedupConfig, Mixture, MixtureSource, SplitConfig

    doc = (Path(__file__).resolve().parents[1] / "docs" / "export.md").read_text(encoding="utf-8")
    for prefix, model in (("", Mixture), ("sources[].", MixtureSource), ("split.", SplitConfig),
                          ("dedup.", DedupConfig)):
        for name in model.model_fields:
            if model is Mixture and name in ("split", "dedup"):
                continue
            assert f"| `{prefix}{name}` |" in doc, f"docs/export.md lacks {prefix}{name}"


def test_mixture_schema_is_current_and_documents_fields():
    from dataforge.recipe.schema import schema_json

    repo = Path(__file__).resolve().parents[1]
    committed = (repo / "schemas" / "mixture.schema.json").read_text(encoding="utf-8")
    assert committed == schema_json("mixture"), "run `dataforge schema` to refresh schemas/mixture.schema.json"
    schema = json.loads(committed)
    assert schema["properties"]["cap"]["description"].startswith("Default per-source cap")
    assert schema["additionalProperties"] is False


# A child export that SIGKILLs itself at one point of writing: `write` (a split written to the
# staging folder, no manifest yet) or `swap` (after the earlier export was moved aside, before the new one moved in).
_KILLED_EXPORT = """
import os, signal, sys
from dataforge import api, outdir
from dataforge.export import run

point = sys.argv[4]
if point == "write":
    write_split = run.write_split
    def split_then_die(*a, **k):
        write_split(*a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    run.write_split = split_then_die
else:
    replace = os.replace
    def once(src, dst):
        replace(src, dst)
        os.kill(os.getpid(), signal.SIGKILL)
    outdir.os.replace = once
api.export(sys.argv[1], out=sys.argv[2], catalog=sys.argv[3])
"""


@pytest.mark.parametrize("point", ["write", "swap"])
def test_an_export_killed_outright_leaves_nothing_the_next_export_does_not_clear(cat, write, tmp_path, point):
    import subprocess
    import sys

    mix = _mixture(write, "total: 20\nsources:\n  - dataset: alpha\n")
    out = tmp_path / "out"
    api.export(mix, out=out, catalog=cat)
    before = {p.name: _sha(p) for p in out.iterdir()}
    child = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, mix, out, cat, point], capture_output=True)
    assert child.returncode == -9, child.stderr
    # Killed between the two moves, the earlier export is only there under its `.old-` name: the
    # next export puts it back first (then replaces it, as any earlier export).
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert out.is_dir() == (point == "write")
    api.export(mix, out=out, catalog=cat)
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_a_catalog_path_that_is_a_folder_is_named_as_such(write, tmp_path, cli):
    """Not 'no catalog at ...; run dataforge build first', which sends the user to a build that
    refuses the folder in turn."""
    (tmp_path / "cat").mkdir()
    res = cli("export", _mixture(write, "sources:\n  - dataset: alpha\n"), "--out", tmp_path / "out",
              "--catalog", tmp_path / "cat")
    assert res.exit_code == 2 and f"catalog path {tmp_path / 'cat'} is not a file" in res.output, res.output


# A child export that stops (alive) once a split is in its staging folder, as a slow export does.
_PAUSED_EXPORT = """
import sys, time
from dataforge import api
from dataforge.export import run

write_split = run.write_split
def split_then_wait(*a, **k):
    write_split(*a, **k)
    time.sleep(120)
run.write_split = split_then_wait
api.export(sys.argv[1], out=sys.argv[2], catalog=sys.argv[3])
"""


def test_an_export_running_in_a_container_keeps_its_staging_folder(cat, write, tmp_path):
    """An export in another pid namespace (a container with the host's name, the folder mounted in)
    has a pid that here is nobody's, or another process's: an export from here must not take its
    staging folder for a dead one's and delete it from under it."""
    import shutil
    import subprocess
    import sys
    import time

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-pf", "--mount-proc", "true"],
                                                         capture_output=True).returncode != 0:
        pytest.skip("needs unshare -p (root) to run a process in another pid namespace")
    mix = _mixture(write, "total: 20\nsources:\n  - dataset: alpha\n")
    out = tmp_path / "out"
    free = subprocess.Popen(["true"])
    free.wait()  # its pid is nobody's here now: the child gets it in its namespace
    script = (f"echo {free.pid - 1} > /proc/sys/kernel/ns_last_pid; "
              f"{sys.executable} -c \"$0\" \"$@\"; exit $?")
    child = subprocess.Popen(["unshare", "-pf", "--mount-proc", "sh", "-c", script, _PAUSED_EXPORT, mix, out, cat],
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (staging := [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child export never started writing"
            time.sleep(0.05)
        time.sleep(0.5)
        api.export(mix, out=out, catalog=cat)
        assert staging[0].is_dir() and any(staging[0].iterdir())  # the container's export goes on
    finally:
        child.kill()
        child.wait()
        for p in staging:
            shutil.rmtree(p, ignore_errors=True)
