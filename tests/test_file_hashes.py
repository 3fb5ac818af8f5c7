"""A source's fingerprint holds its file's sha256; the catalog remembers each file's hash by its
identity on disk, so a rebuild does not read an unchanged file again, and any change is seen."""

from __future__ import annotations

import os
import time

import pytest

from dataforge import api, hashing

RECIPE = """
name: hashed
steps:
  - id: rows
    type: source.csv
    path: data.csv
    columns: [text, label]
outputs: {rows: rows}
"""


@pytest.fixture
def reads(monkeypatch):
    """The files `file_sha256` read, in order."""
    seen: list[str] = []
    real = hashing.file_sha256

    def counting(path):
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(hashing, "file_sha256", counting)
    return seen


def _age(path, seconds: float) -> None:
    """Make a file look untouched for `seconds` (mtime only: ctime is the kernel's)."""
    t = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(t, t))


def test_a_rebuild_does_not_read_an_unchanged_source_file_to_fingerprint_it(write, catalog, reads, monkeypatch):
    monkeypatch.setattr(hashing, "RACY_NS", 0)  # the file was written a moment ago (see the racy test)
    data = write("data.csv", "text,label\na,1\nb,0\n")
    r = write("r.yaml", RECIPE)
    api.build(r, catalog=catalog)
    assert reads == ["data.csv"]
    again = api.build(r, catalog=catalog)
    assert reads == ["data.csv"] and again.steps[0].status == "reused"
    api.validate(r, catalog=catalog)  # planning without a build reads the remembered hash too
    assert reads == ["data.csv"]
    # Another file put in its place (a new inode), the same bytes: read again, the same fingerprint.
    copy = data.with_name("copy.csv")
    copy.write_bytes(data.read_bytes())
    os.replace(copy, data)
    assert api.build(r, catalog=catalog).steps[0].status == "reused"
    assert reads == ["data.csv", "data.csv"]


def test_a_file_rewritten_with_its_size_and_mtime_kept_is_read_again(write, catalog, reads, monkeypatch):
    """`touch -d`/`cp -p` can put an old mtime back; nothing puts back the ctime a write sets."""
    monkeypatch.setattr(hashing, "RACY_NS", 0)
    data = write("data.csv", "text,label\na,1\nb,0\n")
    r = write("r.yaml", RECIPE)
    api.build(r, catalog=catalog)
    before = os.stat(data)
    time.sleep(0.05)  # past the kernel's timestamp tick
    data.write_text("text,label\nz,1\nb,0\n", encoding="utf-8")  # same size
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(data).st_size == before.st_size and os.stat(data).st_mtime_ns == before.st_mtime_ns
    res = api.build(r, catalog=catalog)
    assert reads == ["data.csv", "data.csv"] and res.steps[0].status == "built"
    assert sorted(api.read("rows", catalog=catalog)["text"].to_list()) == ["b", "z"]


def test_a_file_changed_just_before_it_was_hashed_is_hashed_again_next_time(write, catalog, reads):
    """A write in the same timestamp tick as the one before it would leave the file's identity as it
    was: a hash taken within `RACY_NS` of the file's last change is not trusted."""
    write("data.csv", "text,label\na,1\n")
    r = write("r.yaml", RECIPE)
    api.build(r, catalog=catalog)
    api.build(r, catalog=catalog)
    assert reads == ["data.csv", "data.csv"]  # ctime is seconds old at most: never trusted yet


def test_the_remembered_hash_is_the_files_and_survives_in_the_catalog(write, catalog):
    data = write("data.csv", "text,label\na,1\n")
    _age(data, 10)
    r = write("r.yaml", RECIPE)
    api.build(r, catalog=catalog)
    row = api.sql("select path, size, sha256 from _file_hashes", catalog=catalog).row(0)
    assert row == (str(data.resolve()), data.stat().st_size, hashing.file_sha256(data))
