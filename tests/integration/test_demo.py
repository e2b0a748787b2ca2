"""`make demo` works: the demo, at a reduced scale, runs the real `volley run` and
`volley top` against its mini internet and ends with everything delivered or accounted
for (exit status 0), greylisted and sleepy-MX mail delivered after deferrals, bounces
reported with their DSNs, and the log and metrics where the summary says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.volley import REPO

TIMEOUT = 120  # seconds; it takes ~5 s here


def test_demo_delivers_or_accounts_for_everything(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = ["--messages", "300", "--domains", "8", "--outage", "1s", "--workers", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "demo", *args, "--dir", str(demo_dir)],
        cwd=REPO,  # as `make demo` runs it
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    out = done.stdout + done.stderr
    print(out[-3000:])
    assert done.returncode == 0, out
    assert "volley top" in out  # the live view ran
    assert "300 messages to 18 domains: everything delivered or accounted for" in out, out
    assert "still queued      0" in out, out
    assert "receivers    got every delivered message exactly once" in out, out
    log = [json.loads(line) for line in (demo_dir / "delivery.jsonl").read_text().splitlines()]
    finals = {r["rcpt"]: r["event"] for r in log if r["event"] in ("delivered", "bounced")}
    mail = {r: e for r, e in finals.items() if r != "news@shop.test"}
    assert len(mail) == 300
    # Greylisted recipients were deferred first, then delivered.
    grey = [r for r in mail if r.startswith("flaky")]
    assert grey and all(mail[r] == "delivered" for r in grey), grey
    deferred = {r["rcpt"] for r in log if r["event"] == "deferred"}
    assert set(grey) <= deferred
    # Unknown users and misspelt domains bounced; each got a DSN to the sender.
    bounced = [r for r, e in mail.items() if e == "bounced"]
    assert bounced and all(r.startswith("permfail-") or "mial.test" in r for r in bounced)
    dsn = sum(1 for r in log if r["event"] == "dsn")
    assert dsn == len(bounced)
    assert "volley_delivered_total" in (demo_dir / "metrics.txt").read_text()
    assert not list((demo_dir / "spool" / "incoming").iterdir())
