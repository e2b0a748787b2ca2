"""engine.suppress.csvio: export -> import is the same list; bad rows name their lines."""

from __future__ import annotations

import io

import pytest

from engine.suppress.csvio import CsvError, read_entries, write_rows
from engine.suppress.model import GLOBAL, Entry, Source

T = 1_800_000_000.0


def test_round_trip() -> None:
    entries = [
        Entry("bob@x.test", GLOBAL, 'says "hi", twice', Source.MANUAL, T),
        Entry("ann@y.test", "news.example.com", "unsubscribed", Source.UNSUBSCRIBE, T + 1),
        Entry("typo.test", GLOBAL, "", Source.BOUNCE, T + 2, T + 86400),
        Entry("zoe@bücher.example", GLOBAL, "ümlaut", Source.IMPORT, T + 3),
    ]
    out = io.StringIO()
    assert write_rows(out, entries) == 4
    assert out.getvalue().startswith("address,scope,reason,source,created,expires\r\n")
    back = read_entries(out.getvalue(), T + 99)
    assert back[:3] == entries[:3]
    assert back[3] == Entry("zoe@xn--bcher-kva.example", GLOBAL, "ümlaut", Source.IMPORT, T + 3)


def test_other_tools_files() -> None:
    text = "\ufeffEmail,Name\r\nBob@X.test,Bob\r\n\r\nann@y.test,Ann\r\n"
    got = read_entries(text, T)
    assert [e.key for e in got] == ["bob@x.test", "ann@y.test"]
    assert all(e.source is Source.IMPORT and e.scope == GLOBAL and e.created == T for e in got)
    plain = read_entries("bob@x.test\nexample.org\n", T)
    assert [e.key for e in plain] == ["bob@x.test", "example.org"]
    assert read_entries("", T) == []


def test_bad_rows_are_named_and_nothing_is_read() -> None:
    text = (
        "address,source,expires\r\nok@x.test,,\r\nnot an address,,\r\n"
        "b@x.test,spam,\r\nc@x.test,,soon\r\n"
    )
    with pytest.raises(CsvError) as e:
        read_entries(text, T)
    assert e.value.errors == [
        "line 3: 'not an address' is not a domain name",
        "line 4: source: 'spam' is not one of manual, bounce, complaint, unsubscribe, import",
        "line 5: expires: 'soon' is not a time (ISO 8601 or epoch seconds)",
    ]
