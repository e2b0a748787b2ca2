"""Tests for tests.support.receiver_scenarios: the recipient-keyed behaviour table."""

from __future__ import annotations

import pytest

from tests.support.receiver_scenarios import Behaviour, Scenario, scenario_for


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("bob@x.test", Scenario(Behaviour.ACCEPT)),
        ("tempfail-1@x.test", Scenario(Behaviour.TEMPFAIL)),
        ("PermFail@x.test", Scenario(Behaviour.PERMFAIL)),
        ("flaky3-a@x.test", Scenario(Behaviour.FLAKY, 3)),
        ("flaky12-a@x.test", Scenario(Behaviour.FLAKY, 12)),
        ("flaky-a@x.test", Scenario(Behaviour.ACCEPT)),
        ("datafail@x.test", Scenario(Behaviour.DATAFAIL)),
        ("datatempfail@x.test", Scenario(Behaviour.DATATEMPFAIL)),
        ("dropdata-1@x.test", Scenario(Behaviour.DROPDATA)),
        ("dropdataonce-1@x.test", Scenario(Behaviour.DROPDATAONCE)),
        ("stall@x.test", Scenario(Behaviour.STALL)),
        ("closercpt@x.test", Scenario(Behaviour.CLOSERCPT)),
        ("rcpt421-z@x.test", Scenario(Behaviour.RCPT421)),
        ("bob-tempfail@x.test", Scenario(Behaviour.ACCEPT)),  # prefix, not substring
        ("tempfail.test@permfail.test", Scenario(Behaviour.TEMPFAIL)),  # local part only
    ],
)
def test_scenario_for_keys_on_local_part_prefix(address: str, expected: Scenario) -> None:
    assert scenario_for(address) == expected
