"""The bench's listener phase: SMTP submission into Volley and into Postfix, the same load.

Responsible for: `run_listener` — Postfix's C `smtp-source` (20 sessions, `--listener-
sessions`; the bench's 5 KB message, the first of the workload; reused connections, lock-
step) submitting N messages to Volley's listener (`smtpd.listen`, engine defaults
otherwise, `--workers` workers) and, as root, to a private Postfix's smtpd + cleanup
(bench.postfix), and for each the accept rate and the CPU per message of the server's
whole process tree.
Not responsible for: the relay phases (bench.phases), the choice between aiosmtpd and
Volley's own server (bench.smtpd_choice measures that), or judging.

What is timed: from the start of smtp-source to the moment the last message is durably
queued.  For Volley that is when smtp-source has its last 250 (Volley answers 250 only
once a message is in an fsynced spool segment; the bench then checks the spool holds all
N); for Postfix when the last queue file is in its hold queue (cleanup fsyncs it before
smtpd answers 250; `check_client_access static:HOLD` keeps Postfix from delivering, as
an operator suspension of the one destination keeps Volley from it).  Neither delivers
during the window: the phase measures taking mail in, nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.measure import TreeSampler, run_numbers
from bench.phases import running, stop_volley, temporary_dir, volley_config, wait_until
from bench.postfix import PostfixRelay
from bench.sinks import find_tool
from bench.workload import Mail
from tests.support.net import free_port
from tests.support.volley import Volley

__all__ = ["run_listener"]


def _smtp_source(
    sample: Mail, n: int, sessions: int, port: int, workdir: Path, timeout: float
) -> float:
    """Submit `n` copies of `sample` over `sessions` connections; seconds it took."""
    body = workdir / "listener-message.txt"
    body.write_bytes(sample.data.replace(b"\r\n", b"\n"))  # smtp-source adds CRLF itself
    args = [find_tool("smtp-source"), "-d", "-s", str(sessions), "-m", str(n), "-F", str(body)]
    args += ["-f", sample.sender, "-t", sample.rcpt, "-M", "client.sender.test"]
    t0 = time.monotonic()
    with open(workdir / "smtp-source.err", "ab") as err:
        subprocess.run(
            [*args, f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=err, timeout=timeout
        ).check_returncode()
    return time.monotonic() - t0


def volley_listener(args: argparse.Namespace, root: Path, sample: Mail, n: int) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port(["127.0.0.1"])
    config = volley_config(args.volley_config)
    config.setdefault("smtpd", {})["listen"] = [f"127.0.0.1:{port}"]
    # No DNS is needed: nothing is delivered during the phase.
    v = Volley(root, dns="127.0.0.1:9", smtp_port=25, workers=args.workers, config=config)
    with contextlib.ExitStack() as stack:
        stack.callback(stop_volley, v)
        v.start()
        assert v.proc is not None
        # The one destination is suspended: the listener's work is measured, not delivery.
        got = v.cli("suspend", sample.domain, "--duration", "1h", "--reason", "bench")
        if got.returncode != 0:
            raise RuntimeError(f"volley suspend failed: {got.stderr.strip()}")
        sampler = TreeSampler(v.proc.pid).start()
        wall = _smtp_source(sample, n, args.listener_sessions, port, root, args.timeout)
        sampler.stop()
        res = run_numbers(n, wall, sampler)
        res["workers"] = args.workers
        res["sessions"] = args.listener_sessions
        if not wait_until(lambda: len(v.queued()) >= n or not running(v), 30):
            raise RuntimeError(f"only {len(v.queued())} of {n} messages queued")
        res["queued"] = len(v.queued())
        res["segments"] = sum(1 for _ in (v.spool / "queue").glob("*/*.seg"))
    return res


def postfix_listener(
    args: argparse.Namespace, sample: Mail, n: int, domains: list[str]
) -> dict[str, Any]:
    with temporary_dir(args, "volley-bench-pf-", "/tmp") as root:
        relay = PostfixRelay(
            root,
            dns_ip="127.0.0.1",  # never asked: nothing leaves the hold queue
            smtp_port=25,
            inject_port=free_port(["127.0.0.1"]),
            domains=domains,
            active_limit=max(20_000, n),
        )
        with relay:
            master = relay.master_pid
            assert master is not None
            sampler = TreeSampler(master).start()
            t0 = time.monotonic()
            _smtp_source(sample, n, args.listener_sessions, relay.inject_port, root, args.timeout)
            if not wait_until(lambda: relay.held() >= n, args.timeout, 0.01):
                raise RuntimeError(f"only {relay.held()} of {n} messages reached Postfix's queue")
            wall = time.monotonic() - t0
            sampler.stop()
        res = run_numbers(n, wall, sampler)
        res["sessions"] = args.listener_sessions
        res["instance_dir"] = str(root)
    return res


def run_listener(
    args: argparse.Namespace, root: Path, sample: Mail, n: int, *, postfix: bool
) -> dict[str, Any]:
    """Volley's listener, and Postfix's smtpd + cleanup when `postfix` (root)."""
    out: dict[str, Any] = {"volley": volley_listener(args, root / "listener", sample, n)}
    if postfix:
        out["postfix"] = postfix_listener(args, sample, n, [sample.domain])
        out["volley_vs_postfix"] = round(
            out["volley"]["msgs_per_s"] / out["postfix"]["msgs_per_s"], 3
        )
    out["msgs_per_s"] = out["volley"]["msgs_per_s"]
    return out
