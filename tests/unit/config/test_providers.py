"""engine.config.providers: [providers.NAME] over the shipped data, one-line errors."""

from __future__ import annotations

import pytest

from engine.config import ConfigError, load_settings
from engine.config.settings import from_dict


def test_overrides_and_new_providers_survive_the_trip_to_the_workers() -> None:
    s = load_settings(
        None,
        {
            "providers.google.provider_max_connections": 8,
            "providers.mine.mx_suffixes": [".mx.mine.test"],
            "providers.mine.provider_max_message_rate": "100/min",
        },
    )
    by_name = {p.name: p for p in s.providers}
    assert by_name["google"].provider_max_connections == 8
    assert by_name["google"].max_messages_per_connection == 50
    assert by_name["mine"].mx_suffixes == (".mx.mine.test",)
    assert from_dict(s.to_dict()) == s


def test_a_bad_value_is_one_line_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^providers\.yahoo\.max_message_rate: expected"):
        load_settings(None, {"providers.yahoo.max_message_rate": "lots"})
