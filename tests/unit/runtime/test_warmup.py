"""engine.runtime.warmup: egress.db only once a source warms up; the quota gauges."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import generate_latest

from engine.config import load_settings
from engine.runtime.arbiter import Arbiter
from engine.runtime.warmup import WarmupQuota
from engine.telemetry.export import Exporter


def test_the_file_is_made_only_for_a_warm_up_and_the_gauges_follow(tmp_path: Path) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    plain = load_settings(
        None,
        {
            "spool": {"path": str(tmp_path)},
            "egress": {"sources": {"ip1": {"address": "127.0.0.10"}}},
        },
    )
    exporter = Exporter()
    w = WarmupQuota(Arbiter(lambda *m: None), exporter)
    w.open(plain)
    assert w.db is None and not (tmp_path / "egress.db").exists()
    warm = load_settings(
        None,
        {
            "spool": {"path": str(tmp_path)},
            "egress": {
                "sources": {
                    "ip1": {
                        "address": "127.0.0.10",
                        "warmup": {"start": today, "days": 30, "first": 5, "last": 100},
                    }
                }
            },
        },
    )
    w.open(warm)  # a reload that adds a warm-up
    assert w.db is not None and (tmp_path / "egress.db").exists()
    text = generate_latest(exporter.registry).decode()
    assert 'volley_egress_quota_left{source="ip1"} 5.0' in text  # day 0 of its warm-up
    assert 'volley_egress_quota_used{source="ip1"} 0.0' in text
    w.close()
