"""`source.csv`/`source.tsv`'s fast path: DuckDB's multi-threaded CSV reader, streaming the file into
the catalog, held to what the careful reader (polars, in memory) keeps.

Taken for the common shape: a header line, `columns:` selecting by name, every field a string
(`infer_types: false`), `"` quoting, UTF-8, no `limit`/`sample`. DuckDB reads in strict mode
(a row with too few fields, or a non-empty field too many, stops it), with `""` kept as an empty
string as polars keeps it. Where the two readers would part ways the file is left to the careful
reader, which names the bad line: before the scan, a file with a blank line (polars keeps it as
a row of nulls), a carriage return outside `\\r\\n`, a line ending in the delimiter (DuckDB drops empty fields past
the header's count), or a quote anywhere but at the edge of a field (DuckDB accepts `1"2` and
`"ab" ,x`, which polars refuses); during it, anything DuckDB stops on. What the scan reads is then
the careful reader's frame, value for value, so the row ids are the same. (DuckDB reads the
columns not selected too, as the careful reader does, so that it checks their encoding.)
(tests/test_source_fast_paths.py holds the two side by side).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dataforge.sqlquote import quote_ident, quote_literal


def header(path: Path, sep: str) -> list[str] | None:
    """The names on the header line (BOM dropped), or None when there are none, or some are empty or
    repeat (ignoring case, as DuckDB's names do)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    end = head.find(b"\n")
    if end < 0:
        return None
    try:
        line = head[:end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if line.count('"') % 2:
        return None  # a quoted name spans lines: the careful reader knows
    try:
        names = next(csv.reader(io.StringIO(line.rstrip("\r")), delimiter=sep, quotechar='"', strict=True), [])
    except csv.Error:  # e.g. text after a closing quote: the careful reader says what it makes of it
        return None
    if not names or any(not n for n in names) or len({n.lower() for n in names}) != len(names):
        return None
    return names


def plain_shape(path: Path, sep: str, chunk: int = 1 << 24, parts: int = 2) -> bool:
    """True when nothing in the file makes the two readers differ (see the module docstring). One pass
    over the mapped file, split into `parts` stretches at line ends that threads scan side by side
    (numpy lets go of the GIL), `chunk` bytes at a time, each chunk's pages given back once done, so
    the check needs no file-sized memory."""
    import numpy as np

    from dataforge.steps.sources.checks import mapped

    with mapped(path) as mm:
        if mm is None:  # empty
            return False
        data = np.frombuffer(mm, dtype=np.uint8)
        try:
            return _plain(mm, data, ord(sep), chunk, parts)
        finally:
            del data  # the buffer it exports must go before the map closes


_NL, _CR, _QUOTE = ord("\n"), ord("\r"), ord('"')


def _plain(mm, data, sep: int, chunk: int, parts: int) -> bool:
    n = data.size
    cuts = [0]
    for k in range(1, parts):  # each stretch starts just after a line end
        at = mm.find(b"\n", max(cuts[-1], n * k // parts))
        if at < 0 or at + 1 >= n:
            break
        cuts.append(at + 1)
    cuts.append(n)
    first = 3 if bytes(data[:3]) == b"\xef\xbb\xbf" else 0  # where the first field starts
    spans = list(zip(cuts, cuts[1:]))
    if len(spans) == 1:
        results = [_stretch(mm, data, sep, chunk, first, *spans[0])]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(spans)) as pool:
            results = list(pool.map(lambda span: _stretch(mm, data, sep, chunk, first, *span), spans))
    quotes = 0
    for ok, count in results:
        if not ok[quotes % 2]:
            return False
        quotes += count
    if data[n - 1] == sep:
        return False  # the last line ends in the delimiter
    return quotes % 2 == 0  # else a quote is left open


def _stretch(mm, data, sep: int, chunk: int, first: int, lo: int, hi: int) -> tuple[tuple[bool, bool], int]:
    """Scan `data[lo:hi]`: whether it is plain when an even / an odd number of quotes come before
    it, and how many quotes it holds."""
    import mmap

    import numpy as np

    edge = np.array([_NL, _CR, sep, _QUOTE], dtype=np.uint8)
    n = data.size
    ok = [True, True]
    quotes = 0
    for i in range(lo, hi, chunk):
        end = min(i + chunk, hi)
        part = data[i:end]
        crs = mm.find(b"\r", max(i - 2, 0), end) >= 0  # most files have none: memchr says so for the chunk
        if crs:
            cr = np.flatnonzero(part == _CR) + i
            if not (data[np.minimum(cr + 1, n - 1)] == _NL).all():
                return (False, False), 0  # a carriage return on its own
        nl = np.flatnonzero(part == _NL) + i
        if nl.size:
            before = data[np.maximum(nl - 1, 0)]
            if ((nl > 0) & (before == _NL)).any():
                return (False, False), 0  # a blank line
            # DuckDB drops empty fields past the header's count even in strict mode: a line that ends
            # in the delimiter is the careful reader's (which counts the fields).
            if ((nl > 0) & (before == sep)).any():
                return (False, False), 0
            if crs:
                before2 = data[np.maximum(nl - 2, 0)]
                if ((nl > 1) & (before == _CR) & ((before2 == _NL) | (before2 == sep))).any():
                    return (False, False), 0  # a blank line, or a line ending in the delimiter, in CRLF
        # Counted from the start, quotes pair up: each opening one starts a field (or doubles the
        # one before it), each closing one ends a field (or is doubled by the one after it).
        q = np.flatnonzero(part == _QUOTE) + i
        if q.size:
            opens = (q == first) | np.isin(data[np.maximum(q - 1, 0)], edge)
            closes = (q == n - 1) | np.isin(data[np.minimum(q + 1, n - 1)], edge)
            for before_here in (0, 1):  # the parity of the quotes before this stretch
                odd = (before_here + quotes) % 2  # 1: this chunk's first quote closes a field
                ok[before_here] = ok[before_here] and bool(opens[odd::2].all() and closes[1 - odd::2].all())
            if not (ok[0] or ok[1]):
                return (False, False), 0
            quotes += q.size
        page = i - i % mmap.PAGESIZE  # madvise wants a page boundary; the next chunk faults its part back in
        mm.madvise(mmap.MADV_DONTNEED, page, end - page)
    return (ok[0], ok[1]), quotes


def select_sql(path: Path, names: list[str], sep: str, mapping: dict[str, str]) -> str:
    """A DuckDB SELECT of `mapping` (output name -> header name) from the whole file, every field a string."""
    columns = "{" + ", ".join(f"{quote_literal(n)}: 'VARCHAR'" for n in names) + "}"
    select = ", ".join(f"{quote_ident(src)} AS {quote_ident(dst)}" for dst, src in mapping.items())
    # A condition on every other column, always true, keeps DuckDB reading (and so checking) it.
    rest = [n for n in names if n not in mapping.values()]
    where = " WHERE " + " AND ".join(f"length({quote_ident(n)}) IS DISTINCT FROM -1" for n in rest) if rest else ""
    return (f"SELECT {select} FROM read_csv({quote_literal(str(path))}, header = true, delim = {quote_literal(sep)}, "
            f"quote = '\"', escape = '\"', strict_mode = true, null_padding = false, auto_detect = false, "
            f"allow_quoted_nulls = false, hive_partitioning = false, columns = {columns}){where}")
