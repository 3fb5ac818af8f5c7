"""Printing frames for people and for programs: the CLI's table, vertical, csv, json and jsonl output.

Table and vertical views are for a terminal: control characters in the data are shown as escapes
(`\\x1b`, `\\n`) so a cell cannot clear the screen or retitle the window, cells longer than a limit
end in an ellipsis, numbers get thousands separators, and nested values print as JSON. The
machine formats write every value exactly (nested values as JSON text in csv).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    import polars as pl
else:
    from dataforge.lazy import polars as pl

FORMATS = ("table", "vertical", "csv", "json", "jsonl")
TABLE_FORMATS = ("table", "vertical")
CELL_WIDTH = 60
"""Default longest cell of the table view, in terminal columns, before it is cut with an ellipsis
(numbers are never cut)."""

_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# C0/C1 controls and DEL, bidi overrides and isolates, and the invisible marks that can hide or reorder
# text (zero-width space, LRM/RLM, word joiner and invisible operators, BOM). ZWNJ and ZWJ stay:
# scripts and emoji sequences need them. (The HTML report escapes the same characters.)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _escape_one(m: re.Match) -> str:
    ch = m.group(0)
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with control characters shown as escapes (`ESC` -> `\\x1b`); newlines and tabs kept
    as they are with `keep_newlines`."""
    if keep_newlines:
        return CONTROL.sub(lambda m: m.group(0) if m.group(0) in "\n\t" else _escape_one(m), text)
    return CONTROL.sub(_escape_one, text)


def _json_value(v: Any) -> Any:
    """A value as JSON can hold it exactly: integral decimals as integers, the rest of the
    non-JSON types as text."""
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else str(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


def json_text(v: Any) -> str:
    """One value as compact JSON (lists and structs in csv and table cells)."""
    return json.dumps(_json_value(v), ensure_ascii=False, separators=(", ", ": "))


def cell(v: Any) -> str:
    """One value as the table view shows it (before escaping and truncation)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.6g}" if abs(v) >= 1e15 or (v != 0 and abs(v) < 1e-4) else f"{v:,.6f}".rstrip("0").rstrip(".")
    if isinstance(v, decimal.Decimal):
        return f"{v:,}"
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    if isinstance(v, (list, dict, tuple)):
        return json_text(v)
    return str(v)


def _text(v: Any, width: int, *, keep_newlines: bool = False) -> Text:
    if v is None:
        return Text("null", style="dim")
    t = Text(escape_control(cell(v), keep_newlines=keep_newlines))
    if width and t.cell_len > width and not _is_number(v):  # a cut number reads as another value
        t.truncate(width, overflow="ellipsis")
    return t


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


def more_rows_note(shown: int, total: int) -> str | None:
    """`20 of 1,234 rows shown; --limit N or --all for more`, or None when every row is shown."""
    if total <= shown:
        return None
    return f"{shown:,} of {total:,} rows shown; --limit N or --all for more"


CUT_HINT = "--format vertical shows them whole"
"""What a table cut to the terminal's width says to do about it (a command with more ways passes its own)."""


def print_frame(df: pl.DataFrame, fmt: str, console: Console, *, title: str | None = None,
                total: int | None = None, width: int = CELL_WIDTH, cut_hint: str = CUT_HINT) -> None:
    """Print `df` in `fmt`. Table views end with a note when `total` (rows in all) is more than shown,
    and with `cut_hint` when columns were cut to fit the terminal; the machine formats print exactly
    the rows given, nothing else."""
    if fmt in ("csv", "json", "jsonl"):
        write_machine(df, fmt, console.file)
        return
    note = more_rows_note(df.height, total) if total is not None else None
    if fmt == "vertical":
        _print_vertical(df, console, title, width)
    else:
        _print_table(df, console, title, width, cut_hint)
    if df.height == 0 and not note:
        note = "0 rows"  # said plainly, not left to an empty table (or, in vertical view, a bare title)
    if note:
        console.print(note, markup=False, highlight=False, style="dim")


def _print_table(df: pl.DataFrame, console: Console, title: str | None, width: int, cut_hint: str) -> None:
    table = Table(title=escape_control(title) if title else None, show_lines=False)
    for name, dtype in df.schema.items():
        table.add_column(escape_control(name), no_wrap=True, overflow="ellipsis",
                         justify="right" if dtype.is_numeric() else "left")
    for row in df.iter_rows():
        table.add_row(*[_text(v, width) for v in row])
    if console.is_terminal:
        narrowed = _fit(table, df, console.width)
        console.print(table)
        if narrowed:
            console.print(f"columns cut to fit; {cut_hint}",
                          markup=False, highlight=False, style="dim")
        return
    # Piped or logged: as wide as the table needs, so ids and names are not cut at 80 columns.
    need = Measurement.get(console, console.options.update_width(100_000), table).maximum
    Console(width=max(need, console.width), soft_wrap=True, file=console.file, no_color=console.no_color,
            force_terminal=False).print(table)


def _fit(table: Table, df: pl.DataFrame, width: int) -> bool:
    """Share the terminal's width among the columns (narrow ones keep theirs, wide ones end in …),
    so that a wide table still prints one line per row. Numbers are never cut (`0.0…` would read as
    another value). A first column whose values are all distinct (what a reader scans by: a name,
    an id) keeps its width up to two thirds of the room, number headers giving way (down to their
    values, or 4 cells) before it is cut; other text columns share the rest. A table whose numbers
    alone do not fit is printed wider than the terminal."""
    from rich.cells import cell_len

    natural = [max([cell_len(c.header)] + [cell.cell_len for cell in c._cells]) for c in table.columns]
    room = width - (3 * len(natural) + 1)  # borders and padding
    if sum(natural) <= room or not natural:
        return False
    numeric = [dtype.is_numeric() for dtype in df.schema.values()]
    values = [max([cell.cell_len for cell in c._cells], default=1) for c in table.columns]
    text_cols = [i for i, n in enumerate(numeric) if not n]
    alloc = [natural[i] if numeric[i] else 0 for i in range(len(natural))]
    key = bool(text_cols) and text_cols[0] == 0 and _distinct(df.to_series(0))
    first = min(natural[0], max(2 * room // 3, 4)) if key else None
    rest = text_cols[1:] if first is not None else text_cols
    # Number headers give way (down to their values, or 4 cells) before the first column is cut
    # below `first` or another text column goes under 4.
    excess = sum(alloc) + (first or 0) + sum(min(natural[i], 4) for i in rest) - room
    for i in sorted((i for i in range(len(alloc)) if numeric[i]), key=lambda i: values[i] - natural[i]):
        give = max(0, min(excess, natural[i] - max(values[i], 4)))
        alloc[i] -= give
        excess -= give
    left = room - sum(alloc)
    if first is not None:
        alloc[0] = max(min(first, left - 4 * len(rest)), 4)
        left -= alloc[0]
    open_cols = sorted(rest, key=natural.__getitem__)
    while open_cols:
        share = max(left // len(open_cols), 4)
        i = open_cols[0]
        if natural[i] <= share:
            alloc[i] = natural[i]
            left -= natural[i]
            open_cols.pop(0)
            continue
        for i in open_cols:
            alloc[i] = share
        break
    for col, w, is_num, need in zip(table.columns, alloc, numeric, values):
        col.max_width = w
        if is_num:
            col.min_width = need  # rich's last resort shrinks every column evenly: not these
            if isinstance(col.header, str) and cell_len(col.header) > max(w, need) >= 4:
                col.header = _middle_cut(col.header, max(w, need))
    return True


def _middle_cut(name: str, width: int) -> str:
    """A header cut in the middle (at 6 cells `rows_in` -> `row…in`, `rows_out` -> `row…ut`): cut at the
    end, two columns whose names share a start would read alike (`rows_…`, `rows_…`)."""
    tail = (width - 1) // 2
    return name[:width - 1 - tail] + "…" + name[len(name) - tail:]


def _distinct(s: pl.Series) -> bool:
    """Whether every value of a column is different from the others (a key)."""
    try:
        return s.len() > 0 and s.n_unique() == s.len()
    except pl.exceptions.PolarsError:  # a kind polars cannot compare
        return False


def _print_vertical(df: pl.DataFrame, console: Console, title: str | None, width: int) -> None:
    """One block per row, `column  value` lines: for rows too wide for a table."""
    if title:
        console.print(Text(escape_control(title), style="bold"))
    names = [escape_control(c) for c in df.columns]
    if df.height == 0 and names:  # no blocks to name them: say which columns there are
        console.print(Text(f"columns: {', '.join(names)}"))
    for i, row in enumerate(df.iter_rows(), 1):
        console.rule(Text(f"row {i:,}"), align="left", style="dim")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, v in zip(names, row):
            grid.add_row(name, _text(v, width, keep_newlines=True))
        console.print(grid)


def write_machine(df: pl.DataFrame, fmt: str, out: TextIO) -> None:
    """Every value exactly: csv (nested values as JSON text), a JSON array, or one JSON object a line."""
    if fmt == "csv":
        nested = [c for c, t in df.schema.items() if t.is_nested()]
        if nested:
            df = df.with_columns(pl.Series(c, [None if v is None else json_text(v) for v in df[c].to_list()],
                                           dtype=pl.Utf8) for c in nested)
        out.write(df.write_csv())
        return
    rows = (_json_value(r) for r in df.iter_rows(named=True))
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    out.write(json.dumps(list(rows), ensure_ascii=False, indent=1) + "\n")


def write_machine_parts(parts: dict[str, pl.DataFrame], fmt: str, out: TextIO) -> None:
    """Several frames as one output: json, one object of arrays by name (one document to parse);
    csv and jsonl, each frame in turn (csv: a table each, a blank line between)."""
    if fmt == "json":
        doc = {name: [_json_value(r) for r in df.iter_rows(named=True)] for name, df in parts.items()}
        out.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
        return
    for i, df in enumerate(parts.values()):
        if i and fmt == "csv":
            out.write("\n")
        write_machine(df, fmt, out)
