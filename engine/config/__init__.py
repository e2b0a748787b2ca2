"""Typed configuration: one TOML file + command-line overrides -> a frozen `Settings`.

The package's modules: `values` (the error type and shared parsers), `helo` (the EHLO
name's checks), `policy` (per-destination limits), `smtpd` (the listener's section), `dkim`
(signing domains), `suppress` (`[suppression]`, `[unsubscribe]`), `bounce` (the user's
bounce classification rules), `routes` (smarthost relays) and `settings` (everything
else, and loading).
"""

from engine.config.bounce import BounceSettings
from engine.config.dkim import DkimDomain
from engine.config.helo import helo_name_error, helo_name_warning
from engine.config.policy import DomainPolicy
from engine.config.settings import IGNORE_TARGET_HOSTS, Settings, from_dict, load_settings
from engine.config.smtpd import SmtpdSettings
from engine.config.suppress import SoftBounce, SuppressionSettings, UnsubscribeSettings
from engine.config.values import ConfigError, parse_address, parse_duration

__all__ = [
    "IGNORE_TARGET_HOSTS",
    "BounceSettings",
    "ConfigError",
    "DkimDomain",
    "DomainPolicy",
    "Settings",
    "SmtpdSettings",
    "SoftBounce",
    "SuppressionSettings",
    "UnsubscribeSettings",
    "from_dict",
    "helo_name_error",
    "helo_name_warning",
    "load_settings",
    "parse_address",
    "parse_duration",
]
