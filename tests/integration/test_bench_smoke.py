"""The bench harness keeps working: every mode, end to end, on a tiny workload.

Runs `python -m bench.run` as a user would and checks that each mode delivers every
message, reports its numbers in the JSON line (printed, so CI logs show it), and leaves no
process behind. Never asserts a speed: that is what the full bench is for (bench/README.md).

Needs Postfix's smtp-sink and smtp-source (`.ci/install-postfix`); the Postfix phase runs
when the suite runs as root (as CI does), since Postfix itself needs root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.workload import Spec, domain_counts, generate

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 240  # seconds per invocation; each takes 5-15 s here


def run_bench(workdir: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--workdir", str(workdir), "--timeout", "120", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    print(proc.stdout)
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert_nothing_left(workdir)
    if "postfix" in result:  # its own short directory (unix socket path limit)
        assert_nothing_left(Path(result["postfix"]["instance_dir"]))
    return result


def assert_nothing_left(workdir: Path) -> None:
    """No live process has its working directory or an open file under `workdir` (the
    sinks: stderr files; Volley: cwd; Postfix's master: cwd = its queue), and the bench
    removed the directory's contents (or, for Postfix's, the directory)."""
    root = str(workdir)
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        links = [f"/proc/{pid}/cwd"]
        try:
            links += [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target.startswith(root):
                left.append((pid, target))
                break
    assert not left, f"processes still using the bench's work directory: {left}"
    assert not workdir.exists() or not any(workdir.iterdir()), f"{workdir} was not removed"


def test_workload_is_reproducible_and_skewed() -> None:
    a = list(generate(Spec(messages=400, domains=10, seed=7)))
    b = list(generate(Spec(messages=400, domains=10, seed=7)))
    assert [m.data for m in a] == [m.data for m in b]
    assert len({m.rcpt for m in a}) == 400
    counts = domain_counts(400, 10)
    assert sum(counts) == 400 and counts[0] == 140 and counts[1:4] == [40, 40, 40]
    assert all(4800 <= len(m.data) <= 5300 for m in a)
    assert all(m.data.endswith(b"\r\n") and b"\n" not in m.data.replace(b"\r\n", b"") for m in a)


def test_compare_volley_postfix_raw(tmp_path: Path) -> None:
    phases = "volley,postfix,raw" if os.geteuid() == 0 else "volley,raw"
    res = run_bench(tmp_path, "--messages", "300", "--domains", "10", "--only", phases)
    assert res["mode"] == "compare"
    v = res["volley"]
    assert v["delivered"] == v["sink_messages"] == 300
    assert v["events"] == {"received": 300, "delivered": 300}
    assert v["exit_status"] == 0
    assert v["connections"] >= 1 and v["sink_sessions"] == v["connections"]
    for key in ("msgs_per_s", "cpu_us_per_msg", "latency_p50_ms", "latency_p99_ms"):
        assert v[key] > 0, key
    assert v["latency_p50_ms"] <= v["latency_p99_ms"]
    assert res["raw"]["sink_messages"] == 300
    assert "volley_vs_raw" in res["ratios"]
    if os.geteuid() == 0:
        p = res["postfix"]
        assert p["sink_messages"] == 300 and p["msgs_per_s"] > 0 and p["dns_queries"] > 0
        assert "volley_vs_postfix" in res["ratios"]


def test_listener_phase_submits_to_volley_and_postfix(tmp_path: Path) -> None:
    res = run_bench(tmp_path, "--messages", "300", "--only", "listener")
    lst = res["listener"]
    v = lst["volley"]
    assert v["messages"] == v["queued"] == 300 and 1 <= v["segments"] <= 300
    assert v["msgs_per_s"] > 0 and v["cpu_us_per_msg"] > 0
    if os.geteuid() == 0:
        p = lst["postfix"]
        assert p["messages"] == 300 and p["msgs_per_s"] > 0
        assert_nothing_left(Path(p["instance_dir"]))
        assert res["ratios"]["listener_volley_vs_postfix"] == lst["volley_vs_postfix"]


def test_wan_mode_measures_per_connection_rate(tmp_path: Path) -> None:
    res = run_bench(
        tmp_path, "--wan-rtt", "20ms", "--messages", "150", "--domains", "3",
        "--wan-min-messages", "3",
    )  # fmt: skip
    v = res["volley"]
    assert v["delivered"] == 150 and v["rtt_ms"] == 20.0
    assert v["measured_connections"] >= 1
    # Each message costs at least one reply delay (its 354 comes with the previous one's
    # 250, RFC 2920), so no connection can beat 1 / RTT = 50 msg/s: a higher figure would
    # mean the sink is not delaying.
    assert 0 < v["per_conn_msgs_per_s_p50"] <= 50.0


def test_scale_mode_starts_from_a_filled_queue(tmp_path: Path) -> None:
    res = run_bench(tmp_path, "--scale", "2000", "--domains", "5", "--scale-window", "0")
    v = res["volley"]
    assert v["queued"] == 2000 and v["delivered"] == 2000
    assert 0 < v["first_delivery_s"] <= v["all_delivered_s"]
    assert v["peak_rss_mb"] > 0 and v["exit_status"] == 0


def test_locust_mode_drops_and_delivers(tmp_path: Path) -> None:
    res = run_bench(
        tmp_path, "--locust", "--locust-rate", "100", "--locust-users", "2",
        "--locust-time", "4s", "--domains", "5",
    )  # fmt: skip
    v = res["volley"]
    assert v["locust_exit"] == 0
    assert v["drops"] > 0 and v["delivered"] == v["drops"] and v["backlog_at_end"] is not None


def test_backpressure_mode_runs_both_engines_against_the_same_refusals(tmp_path: Path) -> None:
    engines = "volley,postfix" if os.geteuid() == 0 else "volley"
    res = run_bench(
        tmp_path, "--backpressure", "451@rcpt=10%,421@connect=5%,550@rcpt=5%,slow=2%:200ms",
        "--backpressure-retry", "1s", "--messages", "300", "--domains", "5", "--only", engines,
    )  # fmt: skip
    assert res["mode"] == "backpressure" and res["retry_s"] == 1.0
    bounced = set()
    for engine in engines.split(","):
        r = res[engine]
        q, rx = r["queue"], r["receivers"]
        assert q["delivered"] + q["bounced"] == 300 and q["expired"] == 0
        assert q["deferrals"] > 0 and q["delivered_after_retry"] > 0
        assert rx["accepted"] == q["delivered"] and rx["accepted_twice"] == 0
        assert rx["refusals"].get("550@rcpt") == q["bounced"]
        assert r["msgs_per_s"] > 0 and r["cpu_us_per_msg"] > 0
        bounced.add(q["bounced"])
    assert len(bounced) == 1  # the same recipients do not exist, whichever engine asks
