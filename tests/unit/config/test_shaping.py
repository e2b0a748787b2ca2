"""[shaping]: defaults, every mistake one line naming the key, a rules file after the
inline rules, and the dict form reading back to equal settings (rules inline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.config.shaping import ShapingSettings, read_shaping, shaping_dict
from engine.config.values import ConfigError, Table

RULE = {"name": "slow-x", "regex": "too busy", "action": "suspend", "duration": "1h"}


def read(data: dict[str, Any]) -> ShapingSettings:
    return read_shaping(Table(data, "shaping"))


def test_defaults() -> None:
    s = read({})
    assert s == ShapingSettings()
    assert (s.enabled, s.decrease, s.increase_connections, s.increase_rate) == (
        True,
        0.7,
        1,
        0.1,
    )
    assert (s.window, s.throttle_share, s.min_samples) == (60.0, 0.05, 20)
    assert (s.floor_connections, s.floor_rate, s.rules) == (1, pytest.approx(1 / 60), ())


def test_every_key() -> None:
    s = read(
        {
            "enabled": False,
            "decrease": 0.7,
            "increase_connections": 2,
            "increase_rate": 0.2,
            "window": "30s",
            "throttle_share": 0.1,
            "min_samples": 5,
            "floor_connections": 2,
            "floor_rate": "6/min",
            "rules": [RULE],
        }
    )
    assert (s.enabled, s.decrease, s.increase_connections, s.increase_rate) == (
        False,
        0.7,
        2,
        0.2,
    )
    assert (s.window, s.throttle_share, s.min_samples, s.floor_connections) == (30.0, 0.1, 5, 2)
    assert s.floor_rate == pytest.approx(0.1)
    assert [r.name for r in s.rules] == ["slow-x"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"decrease": 1}, "shaping.decrease: expected a number above 0 and below 1"),
        ({"decrease": 0}, "shaping.decrease"),
        ({"increase_rate": 1.5}, "shaping.increase_rate: expected a number above 0 and at most 1"),
        ({"throttle_share": 0}, "shaping.throttle_share"),
        ({"increase_connections": 0}, "shaping.increase_connections: expected an integer >= 1"),
        ({"min_samples": 0}, "shaping.min_samples"),
        ({"floor_connections": 0}, "shaping.floor_connections"),
        ({"floor_rate": "0/min"}, "shaping.floor_rate: a rate must be positive; got '0/min'"),
        ({"floor_rate": True}, "shaping.floor_rate: expected a rate"),
        ({"window": "0s"}, "shaping.window: must be above 0"),
        ({"window": "soon"}, "shaping.window: expected a duration"),
        ({"enabled": "yes"}, "shaping.enabled: expected true or false"),
        ({"rules": [{**RULE, "regex": "("}]}, r"shaping.rules[0] (slow-x).regex: bad regular"),
        ({"rules": {"name": "x"}}, "shaping.rules: expected an array of tables"),
        ({"rules_file": 3}, "shaping.rules_file: expected a file path"),
        ({"speed": "fast"}, "unknown configuration key: shaping.speed"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        read(data)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_rules_file_after_inline_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nname = "from-file"\nregex = "x"\naction = "reduce"\nconnections = 1\n'
        'duration = "10m"\n'
    )
    s = read({"rules_file": str(path), "rules": [RULE]})
    assert s.rules_file == path
    assert [r.name for r in s.rules] == ["slow-x", "from-file"]
    # The dict carries the file's rules inline: it reads back equal without the file.
    path.unlink()
    again = read(shaping_dict(s))
    assert again == s
    assert [r.name for r in again.rules] == ["slow-x", "from-file"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[rules]]\nname = "x"\nregex = "("\naction = "suspend"\nduration = "1h"\n',
            r"rules\[0\] \(x\)\.regex: bad regular expression",
        ),
        ("[[rules]\n", "Expected ']]'"),
        ('colour = "red"\n', "unknown key 'colour'"),
        (
            '[[rules]]\nname = "slow-x"\nregex = "y"\naction = "suspend"\nduration = "1h"\n',
            r"rule 'slow-x' is also in shaping\.rules",
        ),
    ],
)
def test_rules_file_mistakes(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^shaping\.rules_file: {path}: .*{message}"):
        read({"rules_file": str(path), "rules": [RULE]})


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^shaping\.rules_file: cannot read .*: No such file"):
        read({"rules_file": str(tmp_path / "nope.toml")})


def test_empty_rules_file_means_none() -> None:
    assert read({"rules_file": ""}) == ShapingSettings()


def test_dict_round_trip_of_defaults_and_values() -> None:
    for s in (ShapingSettings(), read({"decrease": 0.7, "floor_rate": "6/min", "rules": [RULE]})):
        assert read(shaping_dict(s)) == s
