"""engine.feedback.report: the values' derived properties and their metric labels."""

from __future__ import annotations

import dataclasses

import pytest

from engine.feedback.report import (
    Complaint,
    FeedbackKind,
    FeedbackReport,
    RecipientStatus,
    unparseable,
)
from engine.telemetry.catalog import COUNTERS, FEEDBACK_KINDS


def _item(action: str, final: str | None, original: str | None = None) -> RecipientStatus:
    return RecipientStatus(
        final_recipient=final, original_recipient=original, action=action, status="5.0.0"
    )


def test_recipient_prefers_the_original_and_failed_is_the_action() -> None:
    assert _item("failed", "f@x.example", "o@x.example").recipient == "o@x.example"
    assert _item("failed", "f@x.example").recipient == "f@x.example"
    r = FeedbackReport(
        kind=FeedbackKind.ASYNC_BOUNCE,
        items=(_item("delayed", "d@x.example"), _item("failed", "f@x.example")),
    )
    assert [i.recipient for i in r.failed] == ["f@x.example"]


def test_complaint_recipients_fall_back_to_the_returned_to() -> None:
    assert Complaint(
        "abuse", original_rcpt_to=("a@x.example",), original_to="t@x.example"
    ).recipients == ("a@x.example",)
    assert Complaint("abuse", original_to="t@x.example").recipients == ("t@x.example",)
    assert Complaint("abuse").recipients == ()


def test_values_are_frozen() -> None:
    r = unparseable("why")
    assert (r.kind, r.reason) == (FeedbackKind.UNPARSEABLE, "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.reason = "other"  # type: ignore[misc]


def test_every_kind_is_a_metric_label_from_the_start() -> None:
    assert FEEDBACK_KINDS == tuple(k.value for k in FeedbackKind)
    assert COUNTERS["volley_feedback_reports"].initial == tuple((k,) for k in FEEDBACK_KINDS)
