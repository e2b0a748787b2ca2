"""The suppression list as CSV: `volley suppress export` writes it, `import` reads it.

Responsible for: the file format - a header row `address,scope,reason,source,created,
expires`, one entry a row (`address` is an address or a whole domain; `scope` "global"
or a sender domain; times in ISO 8601 UTC, `expires` empty for never) - writing it
(`write_rows`), and reading it back or reading what other tools export (`read_entries`):
a header naming an `address` or `email` column (any case, any column order; the other
columns optional), or no header at all, when the first column of every row is the
address.  Every row is checked before anything is stored: a bad row is an error naming
its line, and nothing of the file is imported (`CsvError`).
Not responsible for: storing (engine.suppress.service, or the store directly).

Round trip: what `export` writes, `import` reads back as the same entries (a test holds
them equal); missing columns default to scope global, source `import`, created now.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO

from engine.suppress.model import (
    GLOBAL,
    BadEntry,
    Entry,
    Source,
    clean_reason,
    parse_scope,
    parse_target,
)

__all__ = ["COLUMNS", "CsvError", "format_time", "read_entries", "write_rows"]

COLUMNS = ("address", "scope", "reason", "source", "created", "expires")
MAX_ERRORS = 10  # errors reported for one file (the first ones, with their lines)


class CsvError(ValueError):
    """A file that cannot be imported; `errors` are "line N: why" texts."""

    def __init__(self, errors: list[str], more: int = 0) -> None:
        text = "; ".join(errors) + (f"; and {more} more" if more else "")
        super().__init__(text)
        self.errors = errors


def format_time(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str, what: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)  # epoch seconds
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadEntry(f"{what}: {text!r} is not a time (ISO 8601 or epoch seconds)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def write_rows(out: IO[str], entries: Iterable[Entry], *, header: bool = True) -> int:
    w = csv.writer(out, lineterminator="\r\n")
    if header:
        w.writerow(COLUMNS)
    n = 0
    for e in entries:
        w.writerow(
            (
                e.key,
                e.scope,
                e.reason,
                e.source.value,
                format_time(e.created),
                format_time(e.expires),
            )
        )
        n += 1
    return n


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        if any(cell.strip() for cell in row):
            yield reader.line_num, row


def read_entries(text: str, now: float) -> list[Entry]:
    """Every entry of a CSV file's text; raises CsvError naming the bad lines."""
    rows = list(_rows(text.lstrip("\ufeff")))  # Excel's byte order mark
    if not rows:
        return []
    first = [c.strip().lower() for c in rows[0][1]]
    index: dict[str, int] = {}
    if "address" in first or "email" in first:
        index = {name: first.index(name) for name in COLUMNS if name in first}
        if "address" not in index:
            index["address"] = first.index("email")
        rows = rows[1:]
    else:
        index = {"address": 0}
    errors: list[str] = []
    more = 0
    out: list[Entry] = []

    def cell(row: list[str], name: str) -> str:
        i = index.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    for line, row in rows:
        try:
            source = cell(row, "source") or Source.IMPORT.value
            try:
                src = Source(source)
            except ValueError:
                raise BadEntry(
                    f"source: {source!r} is not one of manual, bounce, complaint, "
                    "unsubscribe, import"
                ) from None
            created = _parse_time(cell(row, "created"), "created")
            out.append(
                Entry(
                    parse_target(cell(row, "address")),
                    parse_scope(cell(row, "scope") or GLOBAL),
                    clean_reason(cell(row, "reason")),
                    src,
                    now if created is None else created,
                    _parse_time(cell(row, "expires"), "expires"),
                )
            )
        except BadEntry as e:
            if len(errors) < MAX_ERRORS:
                errors.append(f"line {line}: {e}")
            else:
                more += 1
    if errors:
        raise CsvError(errors, more)
    return out
