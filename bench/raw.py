"""The raw SMTP limit of this machine: Postfix's C `smtp-source` into `smtp-sink`.

Responsible for: sending `count` copies of one workload message from smtp-source to the
same sinks the engines deliver to, spread over the sink addresses, over reused
connections (`-d`), and timing it the same way (start to the sinks' last message).
Not responsible for: the sinks (bench.sinks) or what the number is compared with (bench.run).

smtp-source is lock-step (its man page: "No SMTP command pipelining support") and does no
DNS, no queueing and no disk I/O: it is the cost of the SMTP exchange and the sink alone,
i.e. an upper bound no MTA on this machine reaches. Its `-F file` sends the file's lines
with CRLF appended and dot-stuffing done, so the file is written with LF line endings.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.sinks import SmtpSinks, find_tool
from bench.workload import Mail

__all__ = ["RawResult", "run_raw"]


@dataclass(frozen=True, slots=True)
class RawResult:
    messages: int
    seconds: float
    sessions: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def run_raw(
    sinks: SmtpSinks,
    sample: Mail,
    count: int,
    workdir: Path,
    sessions: int = 20,
    *,
    timeout: float = 600.0,
) -> RawResult:
    """Send `count` messages like `sample` over `sessions` connections in total."""
    workdir.mkdir(parents=True, exist_ok=True)
    body = workdir / "raw-message.txt"
    body.write_bytes(sample.data.replace(b"\r\n", b"\n"))
    binary = find_tool("smtp-source")
    k = len(sinks.ips)
    per_sink = [count // k + (1 if i < count % k else 0) for i in range(k)]
    per_sessions = max(1, sessions // k)
    before = sinks.messages
    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    try:
        for ip, n in zip(sinks.ips, per_sink, strict=True):
            if n == 0:
                continue
            args = [binary, "-d", "-s", str(min(per_sessions, n)), "-m", str(n)]
            args += ["-F", str(body), "-f", sample.sender, "-t", f"raw@{sample.domain}"]
            args += ["-M", "raw.sender.test", f"{ip}:{sinks.port}"]
            with open(workdir / f"smtp-source-{ip}.err", "ab") as err:
                procs.append(
                    subprocess.Popen(
                        args, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
                    )
                )
        end = sinks.wait_messages(before + count, timeout)
        for p in procs:
            p.wait(timeout)
            if p.returncode != 0:
                raise RuntimeError(f"smtp-source exited {p.returncode}; see {workdir}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return RawResult(count, end - t0, sum(min(per_sessions, n) for n in per_sink if n))
