"""engine.suppress.client: acknowledged adds, buffered events."""

from __future__ import annotations

from typing import Any

import pytest

from engine.suppress.client import SuppressClient, SuppressRefused
from engine.suppress.model import Entry


async def test_adds_complete_when_answered_and_events_wait_for_flush() -> None:
    sent: list[tuple[Any, ...]] = []
    c = SuppressClient(lambda *m: sent.append(m))
    a, b = c.add([Entry("a@x.test")]), c.add([Entry("b@x.test")])
    assert [m[0] for m in sent] == ["suppress", "suppress"]
    assert sent[0][2] == [Entry("a@x.test").to_row()]
    c.answered(sent[1][1], "StoreError: disk full")
    c.answered(sent[0][1], None)
    c.answered(999, None)  # unknown: ignored
    await a
    with pytest.raises(SuppressRefused, match="disk full"):
        await b
    c.event("QuotaIssues", "a@x.test", "d.test", False, "m1", "452", 1.0)
    assert len(sent) == 2  # buffered
    c.flush()
    assert sent[2] == (
        "suppress_events",
        [["QuotaIssues", "a@x.test", "d.test", False, "m1", "452", 1.0]],
    )
    c.flush()
    assert len(sent) == 3  # nothing more to send
    pending = c.add([Entry("c@x.test")])
    c.close()
    with pytest.raises(SuppressRefused):
        await pending
