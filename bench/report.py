"""What the bench prints: progress lines, the human summary, and the machine it ran on.

Responsible for: the issue's targets (printed beside the numbers), `summary` (the human
summary of one result, per mode), `machine` (CPU, kernel, Python, load, and the commit
measured) and `log` (progress lines on stderr).
Not responsible for: measuring (bench.phases, bench.modes, bench.measure), the JSON line
(bench.run prints it, always the last line of stdout), or judging: targets are printed next
to the numbers, never asserted.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.phases import PHASES, REPO

__all__ = [
    "TARGET_CPU_US",
    "TARGET_LISTENER_RATE",
    "TARGET_LISTENER_VS_POSTFIX",
    "TARGET_RATE",
    "TARGET_SCALE_FIRST_S",
    "TARGET_SCALE_RSS_MB",
    "TARGET_VS_POSTFIX",
    "TARGET_VS_RAW",
    "TARGET_WAN_FRACTION",
    "log",
    "machine",
    "summary",
]

# The targets (printed beside the numbers; never asserted).
TARGET_RATE = 5500.0
TARGET_CPU_US = 150.0
TARGET_VS_POSTFIX = 10.0
TARGET_VS_RAW = 0.40
TARGET_SCALE_RSS_MB = 300.0  # issue #15: 1 M queued, the whole engine
TARGET_SCALE_FIRST_S = 5.0
TARGET_WAN_FRACTION = 0.9
TARGET_LISTENER_RATE = 3000.0  # issue #13: durable accepts, and ...
TARGET_LISTENER_VS_POSTFIX = 2.0  # ... at least twice Postfix's smtpd + cleanup


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
    }


def _commit() -> str | None:
    """HEAD of the repository, "+" if engine/ or spool/ have uncommitted changes (read only)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "engine", "spool"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{head}+" if head and dirty else head or None


def log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _fmt(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:,}{unit}" if isinstance(v, int | float) else str(v)


def summary(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Volley bench ({res['mode']}) {res['date']}, commit {m['commit']}, {m['cpus']} CPUs, load "
        f"{m['load_avg_1m_at_start']} at start, {m['load_avg_1m_at_end']} at end"
    ]
    v = res.get("volley", {})
    if res["mode"] == "compare":
        lines.append(f"{'':<10}{'msg/s':>10}{'wall s':>9}{'CPU µs/msg':>12}{'peak RSS MB':>13}")
        for name in PHASES:
            r = res.get(name)
            if r and name != "listener":
                lines.append(
                    f"{name:<10}{_fmt(r.get('msgs_per_s')):>10}{_fmt(r.get('wall_s')):>9}"
                    f"{_fmt(r.get('cpu_us_per_msg')):>12}{_fmt(r.get('peak_rss_mb')):>13}"
                )
        if v:
            lines.append(
                f"volley: drop→delivered p50 {_fmt(v.get('latency_p50_ms'), ' ms')}, "
                f"p99 {_fmt(v.get('latency_p99_ms'), ' ms')}; {_fmt(v.get('connections'))} "
                f"connections; producer dropped all in {_fmt(v.get('drop_s'))} s; "
                f"delivered {_fmt(v.get('delivered'))}/{_fmt(v.get('messages'))}"
            )
            lines.append(
                f"targets: ≥{TARGET_RATE:,.0f} msg/s, ≤{TARGET_CPU_US:.0f} µs/msg, "
                f"≥{TARGET_VS_POSTFIX:.0f}x Postfix, ≥{TARGET_VS_RAW:.0%} of raw"
            )
        for k, r in res.get("ratios", {}).items():
            lines.append(f"{k.replace('_', ' ')}: {r:.2f}x")
        lst = res.get("listener")
        if lst:
            lines.append(
                "listener (smtp-source, "
                f"{lst['volley']['sessions']} sessions, to the last message durably queued):"
            )
            for who in ("volley", "postfix"):
                r = lst.get(who)
                if r:
                    lines.append(
                        f"  {who:<8}{_fmt(r['msgs_per_s']):>10} msg/s{_fmt(r['wall_s']):>9} s"
                        f"{_fmt(r['cpu_us_per_msg']):>10} µs/msg CPU"
                    )
            if "volley_vs_postfix" in lst:
                lines.append(
                    f"  volley vs postfix: {lst['volley_vs_postfix']:.2f}x (target ≥ "
                    f"{TARGET_LISTENER_VS_POSTFIX:.0f}x, ≥ {TARGET_LISTENER_RATE:,.0f} msg/s)"
                )
        prof = v.get("profile")
        if prof:
            lines.append(f"profile ({prof['samples']} samples, {prof['kind']}), self time:")
            lines += [f"  {p:5.1f}%  {f}" for f, p in prof["self"]]
            lines.append("inclusive:")
            lines += [f"  {p:5.1f}%  {f}" for f, p in prof["inclusive"]]
    elif res["mode"] == "wan":
        lines.append(
            f"RTT {v['rtt_ms']} ms: {v['msgs_per_s']} msg/s over {v['sink_connections']} "
            f"connections; per connection p50 {v['per_conn_msgs_per_s_p50']}, p10 "
            f"{v['per_conn_msgs_per_s_p10']}, weighted {v['per_conn_msgs_per_s_weighted']} "
            f"msg/s (target ≥ {v['per_conn_target']}, ideal {v['per_conn_ideal']}; "
            f"{v['measured_connections']} connections with ≥ {res['wan_min_messages']} messages)"
        )
    elif res["mode"] == "scale":
        lines.append(
            f"{v['queued']:,} queued (filled in {v['fill_s']} s): first delivery "
            f"{v['first_delivery_s']} s after `volley run` (target ≤ {TARGET_SCALE_FIRST_S:.0f}"
            f" s); peak RSS {v['peak_rss_mb']} MB (PSS {v['peak_pss_mb']} MB; target ≤ "
            f"{TARGET_SCALE_RSS_MB:.0f} MB; per process "
            f"{' + '.join(str(p['peak_rss_mb']) for p in v.get('processes', []))} MB); "
            f"{v['delivered']:,} delivered, "
            f"{_fmt(v['msgs_per_s_after_first'])} msg/s after the first"
        )
    elif res["mode"] == "backpressure":
        lines += _backpressure_lines(res)
    elif res["mode"] == "locust":
        lines.append(
            f"locust: {_fmt(v.get('drops'))} drops at {_fmt(v.get('drop_rate'))}/s for "
            f"{_fmt(v.get('locust_s'))} s; delivered at {_fmt(v.get('sustained_msgs_per_s'))} "
            f"msg/s in the steady window; backlog at end {_fmt(v.get('backlog_at_end'))}, "
            f"drained in {_fmt(v.get('drain_s'))} s"
        )
    return "\n".join(lines)


def _backpressure_lines(res: dict[str, Any]) -> list[str]:
    lines = [f"receivers' mix {res['mix']}, retry step {res['retry_s']:g} s (both engines)"]
    lines.append(
        f"{'':<9}{'msg/s':>8}{'wall s':>8}{'CPU µs/msg':>12}{'delivered':>10}{'bounced':>9}"
        f"{'deferrals':>10}{'msgs deferred':>14}{'retried+ok':>11}"
    )
    for who in ("volley", "postfix"):
        r = res.get(who)
        if not r:
            continue
        q = r["queue"]
        lines.append(
            f"{who:<9}{_fmt(r['msgs_per_s']):>8}{_fmt(r['wall_s']):>8}"
            f"{_fmt(r['cpu_us_per_msg']):>12}{_fmt(q['delivered']):>10}{_fmt(q['bounced']):>9}"
            f"{_fmt(q['deferrals']):>10}{_fmt(q['deferred_messages']):>14}"
            f"{_fmt(q['delivered_after_retry']):>11}"
        )
        reasons = ", ".join(f"{k}: {v}" for k, v in list(q["deferrals_by_reason"].items())[:6])
        lines.append(f"  deferrals by reason: {reasons or '-'}")
        rx = r.get("receivers", {})
        lines.append(
            f"  receivers: {_fmt(rx.get('connections'))} connections "
            f"({_fmt(rx.get('refused_connections'))} refused), refusals "
            f"{rx.get('refusals')}, {_fmt(rx.get('slow_replies'))} slow replies, "
            f"{_fmt(rx.get('accepted'))} accepted ({_fmt(rx.get('accepted_twice'))} twice), "
            f"50/90/100 % of them {_fmt(rx.get('accepted_s_p50'))}/"
            f"{_fmt(rx.get('accepted_s_p90'))}/{_fmt(rx.get('accepted_s_last'))} s after the start"
        )
    for k, v in res.get("ratios", {}).items():
        lines.append(f"{k.replace('_', ' ')}: {v:.2f}x")
    return lines
