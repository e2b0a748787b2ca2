"""The dashboard and the alert rules work: every PromQL expression, on a real Prometheus
scraping a real Volley that delivered, deferred and bounced mail.

Each dashboard query must parse and return data; each alert rule must parse; every metric
name either mentions must be one Volley exports.  So renaming a metric without updating
grafana/ and deploy/ fails here.  Prometheus and promtool come from Debian's `prometheus`
package (.ci/install-prometheus); this test never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.internet import message
from tests.support.net import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "grafana" / "dashboards" / "volley.json"
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"

# What Grafana would put in for the template variables: every instance, every domain;
# windows long enough for two 1 s scrapes (Grafana's $__rate_interval is >= 4 scrapes).
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$instance": ".*",
    "$domain": ".*",
}
METRIC_NAME = re.compile(r"\bvolley_[a-z0-9_]+\b")
COUNTERS = '{__name__=~"volley_.*_total"}'
LABEL_VALUES = re.compile(r"^label_values\((?P<metric>.+),\s*(?P<label>\w+)\)$")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: run .ci/install-prometheus (CI does; it installs "
            "Debian's prometheus package, which brings prometheus and promtool)"
        )
    return path


def substitute(expr: str) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown template variable in {expr!r}"
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) for every target of every panel."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            for t in sub.get("targets", []):
                out.append((sub["title"], t["expr"]))
    return out


def variable_queries() -> list[tuple[str, str]]:
    """Template variables as PromQL: label_values(m, l) -> group by (l) (m)."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for var in dash["templating"]["list"]:
        m = LABEL_VALUES.match(var["definition"])
        assert m is not None, f"variable {var['name']}: not label_values(): {var['definition']}"
        out.append((f"${var['name']}", f"group by ({m['label']}) ({m['metric']})"))
    return out


def alert_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


class PrometheusApi:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> dict[str, Any]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as e:  # 400/422: bad query, with a JSON error body
            body = json.load(e)
        return body

    def value(self, expr: str) -> float:
        got = self.query(expr)
        assert got["status"] == "success", got
        result = got["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def names(self) -> set[str]:
        with urllib.request.urlopen(f"{self.base}/api/v1/label/__name__/values", timeout=10) as r:
            return set(json.load(r)["data"])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


def test_promtool_accepts_config_and_rules() -> None:
    promtool = tool("promtool")
    for args in (["check", "config", str(PROM_CONFIG)], ["check", "rules", str(ALERTS)]):
        got = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=30)
        assert got.returncode == 0, f"promtool {' '.join(args)}:\n{got.stdout}{got.stderr}"


def test_every_dashboard_and_alert_query_on_a_real_prometheus(net, volley, tmp_path) -> None:
    prometheus = tool("prometheus")
    (ok,) = net.domain("ok.test")
    net.domain("slow.test")
    net.domain("sender.test")  # where the DSNs for the bounces go
    # A shaping rule for slow.test's tempfail reply, so the Shaping row has a site to show.
    rule = {
        "name": "dashboard-test",
        "regex": "mailbox busy \\(test\\)",
        "action": "reduce",
        "connections": 1,
        "rate": "10/min",
        "duration": "1h",
    }
    v = volley(
        workers=2,
        config={
            "domains": {"slow.test": {"retry_schedule": ["1h"]}},
            "shaping": {"rules": [rule]},
        },
    )
    # An operator's suspension, so that the "Suspended destinations" panel has a row.
    assert v.cli("suspend", "paused.test", "--reason", "dashboard test").returncode == 0
    port = free_port(["127.0.0.1"])
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {
                        "job_name": "volley",
                        "static_configs": [{"targets": [f"127.0.0.1:{v.metrics_port}"]}],
                    }
                ],
            }
        )
    )
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    api = PrometheusApi(port)
    try:
        wait_for(
            lambda: api.ready() or proc.poll() is not None,
            timeout=20,
            message=lambda: log.read_text(errors="replace"),
        )
        assert proc.poll() is None, log.read_text(errors="replace")
        wait_for(lambda: api.value('up{job="volley"}') == 1, timeout=20)
        # Two waves: the first creates each destination's series, the second makes them
        # grow while Prometheus watches, so increase() and the ratios built on it have data
        # (a series first scraped at 6 shows no increase: Prometheus cannot know it was 0).
        for wave in (1, 2):
            for i in range(3):
                v.drop(message("news@sender.test", [f"u{wave}{i}@ok.test"], seq=wave * 100 + i))
            v.drop(message("news@sender.test", [f"tempfail-{wave}@slow.test"], seq=wave * 10))
            v.drop(message("news@sender.test", [f"permfail-{wave}@ok.test"], seq=wave * 10 + 1))
            wait_for(
                lambda wave=wave: (
                    api.value('sum(volley_delivered_total{domain="ok.test"})') >= 3 * wave
                    and api.value('sum(volley_bounced_total{domain="ok.test"})') >= wave
                    and api.value('sum(volley_deferred_total{domain="slow.test"})') >= wave
                ),
                timeout=30,
                message=lambda: f"prometheus: {api.query(COUNTERS)}\nlog: {v.log()}",
            )
        # Two more scrapes, so every rate() over the newest samples has two points.
        scrapes = api.value('count_over_time(up{job="volley"}[5m])')
        wait_for(
            lambda: api.value('count_over_time(up{job="volley"}[5m])') >= scrapes + 2,
            timeout=20,
        )

        exported = api.names()
        problems: list[str] = []
        queries = [("panel", t, e) for t, e in dashboard_queries() + variable_queries()] + [
            ("alert", t, e) for t, e in alert_queries()
        ]
        for kind, title, expr in queries:
            unknown = set(METRIC_NAME.findall(expr)) - exported
            if unknown:
                problems.append(f"{kind} {title!r}: metrics not exported: {sorted(unknown)}")
            got = api.query(substitute(expr))
            if got["status"] != "success":
                problems.append(f"{kind} {title!r}: {got.get('error')}\n    {expr}")
            elif kind == "panel" and not got["data"]["result"]:
                problems.append(f"{kind} {title!r}: no data\n    {expr}")
        assert not problems, "\n".join(problems)
        assert len(queries) >= 40  # the dashboard is not empty by accident
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert ok.messages
    assert v.stop() == 0
