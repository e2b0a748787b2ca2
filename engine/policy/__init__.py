"""Delivery policy as data: bounce categories (and, later, suppression and unsubscribe).

Modules: `categories` (KumoMTA's category names and the `Classification` value),
`rules` (one rule: what it matches, parsed and checked from a TOML table; the rules file
shipped with Volley, `bounce_rules.toml`) and `classifier` (first matching rule wins,
with a bounded cache).
Import the modules themselves: this file re-exports nothing, because engine.model uses
`categories` and `rules`/`classifier` use engine.model (a re-export here would be a cycle).
"""
