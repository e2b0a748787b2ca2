"""`volley queue` and /metrics show the same truth as the log, across all workers."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.internet import message
from tests.support.net import wait_for


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_queue_view_and_metrics(net, volley) -> None:
    (ok,) = net.domain("ok.test")
    net.domain("slow.test")
    v = volley(workers=2, config={"domains": {"slow.test": {"retry_schedule": ["1h"]}}})
    for i in range(30):
        v.drop(message("news@sender.test", [f"u{i}@ok.test"], seq=i))
    for i in range(4):
        v.drop(message("news@sender.test", [f"tempfail-{i}@slow.test"], seq=100 + i))
    wait_for(
        lambda: len(ok.messages) == 30 and v.count("deferred") == 4,
        timeout=30,
        message=lambda: f"{v.log()}",
    )
    out = subprocess.run(
        [sys.executable, "-m", "engine", "queue", "--config", str(v.config_path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    q = json.loads(out.stdout)
    assert set(q) == {"slow.test"}
    assert q["slow.test"]["deferred"] == 4 and q["slow.test"]["queued"] == 0
    assert q["slow.test"]["next_attempt"] is not None
    table = subprocess.run(
        [sys.executable, "-m", "engine", "queue", "--config", str(v.config_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = next(line.split() for line in table.splitlines() if line.startswith("slow.test"))
    assert row[1:3] == ["0", "4"] and row[4] == "in"

    def metric(name: str, **labels: str) -> float:
        return scrape(v.metrics_port).get((name, tuple(sorted(labels.items()))), 0.0)

    wait_for(
        lambda: metric("volley_delivered_total", domain="ok.test") == 30,
        timeout=10,
        message=lambda: str(scrape(v.metrics_port)),
    )
    assert metric("volley_received_total", domain="ok.test") == 30
    assert metric("volley_deferred_total", domain="slow.test", category="TransientFailure") == 4
    wait_for(lambda: metric("volley_queue_entries", state="waiting") == 4, timeout=10)
    assert metric("volley_workers_alive") == 2
    assert metric("volley_connections_total", result="opened") >= 2
    assert v.stop() == 0
