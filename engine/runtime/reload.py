"""SIGHUP: what a new configuration changes in a running Volley, decided as a value.

Responsible for: comparing the running settings with a freshly read and validated file
and deciding which changes apply at once (domain policies and limits, SMTP settings and
timeouts, DSNs, the delivery log, the drain timeout) and which only at the next start
(the spool, the worker count, intake, DNS servers, the metrics, admin and unsubscribe
listeners, the SMTP listener's addresses: they are bound to processes, sockets and files
opened at start; the rest of [smtpd] applies to new SMTP sessions at once).  The settings
that run from then on keep the running values of the latter, so a reload never
half-applies one.
Not responsible for: reading the file (engine.config), or telling the workers
(engine.runtime.supervisor sends them the result; each worker applies it to the
connections it opens from then on: open connections finish as they are).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import Settings, from_dict

__all__ = ["RESTART_ONLY", "RESTART_ONLY_KEYS", "Reload", "plan_reload"]

# Top-level keys of the TOML file whose changes wait for a restart.
# [unsubscribe]: its endpoint is bound and its key read at start.
RESTART_ONLY = frozenset({"spool", "workers", "intake", "dns", "metrics", "admin", "unsubscribe"})
# Dotted keys inside sections that otherwise apply at once: the listener's sockets are
# bound by the supervisor at start (engine.smtpd.sockets).
RESTART_ONLY_KEYS = frozenset({"smtpd.listen", "smtpd.implicit_tls_listen"})


def _restart_only(key: str) -> bool:
    return key.split(".")[0] in RESTART_ONLY or key in RESTART_ONLY_KEYS


@dataclass(frozen=True, slots=True)
class Reload:
    settings: Settings  # what runs from now on
    applied: tuple[str, ...]  # dotted keys whose new values apply now
    at_restart: tuple[str, ...]  # dotted keys that changed but apply at the next start


def plan_reload(running: Settings, new: Settings) -> Reload:
    old_tree, new_tree = running.to_dict(), new.to_dict()
    old_flat, new_flat = _flatten(old_tree), _flatten(new_tree)
    changed = sorted(
        k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k)
    )
    at_restart = tuple(k for k in changed if _restart_only(k))
    applied = tuple(k for k in changed if not _restart_only(k))
    merged = dict(new_tree)
    for key in RESTART_ONLY:
        if key in old_tree:
            merged[key] = old_tree[key]
        else:
            merged.pop(key, None)
    for dotted in RESTART_ONLY_KEYS:
        section, leaf = dotted.split(".")
        merged[section] = {**merged.get(section, {}), leaf: old_tree[section][leaf]}
    return Reload(from_dict(merged), applied, at_restart)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
