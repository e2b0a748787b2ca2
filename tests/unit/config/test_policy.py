"""engine.config.policy: the rate and rollup keys of [domains.*] (the older keys are
covered with the rest of the settings in test_settings)."""

from __future__ import annotations

import pytest

from engine.config import ConfigError, load_settings
from engine.config.settings import from_dict
from engine.shaping.gcra import parse_rate


def test_rates_and_rollup_inherit_and_round_trip() -> None:
    s = load_settings(
        None,
        {
            "domains": {
                "default": {"max_message_rate": "20000/h", "max_connection_rate": "100/min"},
                "solo.test": {"mx_rollup": False, "max_message_rate": ""},
            }
        },
    )
    assert s.default_policy.max_message_rate == parse_rate("20000/h")
    solo = s.policy("solo.test")
    assert solo.mx_rollup is False
    assert solo.max_message_rate is None  # "": no limit
    assert solo.max_connection_rate == parse_rate("100/min")  # inherited
    assert from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_message_rate", "fast", r"^domains\.default\.max_message_rate: expected"),
        ("max_connection_rate", 5, r"^domains\.default\.max_connection_rate: expected a rate"),
        ("mx_rollup", "no", r"^domains\.default\.mx_rollup:"),
    ],
)
def test_bad_values_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, {"domains": {"default": {key: value}}})
