"""engine.drop.cleanup: the fields intake adds, and nothing else changed."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from engine.drop.cleanup import add_missing_headers, date_value, message_id_value

WIRE = b"From: a@b.test\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n"


def test_fields_are_appended_to_the_header_section_only() -> None:
    out = add_missing_headers(WIRE, date="Thu, 26 Nov 2026 12:00:00 +0000", message_id="<k@h>")
    assert out == (
        b"From: a@b.test\r\nSubject: hi\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
        b"Message-ID: <k@h>\r\n\r\n..dot\r\nbody\r\n"
    )
    assert add_missing_headers(WIRE) is WIRE


def test_a_message_without_a_body_gets_them_at_the_end() -> None:
    assert add_missing_headers(b"Subject: x\r\n", message_id="<k@h>") == (
        b"Subject: x\r\nMessage-ID: <k@h>\r\n"
    )


def test_values() -> None:
    assert message_id_value("661fc2", "mta.example.com") == "<661fc2@mta.example.com>"
    parsed = parsedate_to_datetime(date_value(1_800_000_000.0))
    assert parsed.timestamp() == 1_800_000_000.0 and parsed.tzinfo is not None
